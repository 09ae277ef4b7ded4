"""Pretrained weights: download once into the torch hub cache (checked), read local files, load strictly.

``weights=`` in :func:`featvis.load_model` is ``"default"`` (the model's canonical weights, fetched
on first use), a path to a local state dict, an in-memory state dict, or ``None`` (random init).
Every problem raises :class:`WeightsError` with what failed and what to do instead.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import atomic_write

StateDict = Dict[str, torch.Tensor]


class WeightsError(RuntimeError):
    """Weights that could not be downloaded, read or loaded; the message says what to do next."""


@dataclass(frozen=True)
class Checkpoint:
    """A file of pretrained weights: where it is published, its name in the cache, its SHA-256.

    ``sha256=None`` means featvis has not pinned the file's hash yet: the download is then kept
    with a warning that prints the hash it got (see :data:`INCEPTION5H`).
    """

    url: str
    filename: str
    sha256: Optional[str] = None


#: Lucid's InceptionV1 (TF ``inception5h`` graph) as a PyTorch state dict, converted by ProGamerGov.
#: URL: ``model_urls['inceptionv1']`` in torch-lucent 0.1.8, lucent/modelzoo/inceptionv1/InceptionV1.py
#: (Lucent fetches it with torch.hub under the same file name, so a Lucent cache is reused).
#: SHA-256: not pinned. It could not be computed where this was written (no network) and neither
#: Lucent nor its package metadata records it. Fill it in from the real file
#: (``sha256sum ~/.cache/torch/hub/checkpoints/inception5h.pth``); until then a download is
#: kept with a warning that prints the hash it got.
INCEPTION5H = Checkpoint(
    url="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
    filename="inception5h.pth",
    sha256=None,
)

_CHUNK = 1 << 20


def cache_path(filename: str) -> Path:
    """Where torch hub keeps downloaded weights: ``torch.hub.get_dir()/checkpoints/filename``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _local_hint(name: str) -> str:
    return (f"pass a local copy with load_model({name!r}, weights=PATH) (CLI: --weights PATH), "
            "or weights=None for random weights")


def _download_to(ckpt: Checkpoint, tmp: str, progress: bool) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(ckpt.url, timeout=60) as response, open(tmp, "wb") as f:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=ckpt.filename, disable=not progress, leave=False) as bar:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    got = digest.hexdigest()
    if ckpt.sha256 is None:
        warnings.warn(f"featvis has no pinned SHA-256 for {ckpt.filename}, so the download from {ckpt.url} "
                      f"is not verified; its SHA-256 is {got}", stacklevel=4)
    elif got != ckpt.sha256.lower():
        raise WeightsError(
            f"checksum mismatch for {ckpt.filename} downloaded from {ckpt.url}: SHA-256 {got}, expected "
            f"{ckpt.sha256}; the file was not kept. Try again (the download may have been corrupted), or "
            f"put a verified copy at {cache_path(ckpt.filename)}")


def fetch(ckpt: Checkpoint, name: str, progress: bool = True) -> Path:
    """The cached file of ``ckpt``, downloading it first if it is not in the cache yet.

    The download goes to a temporary file next to the cache entry and is renamed into place only
    once complete and checked, so a failure leaves nothing behind.
    """
    path = cache_path(ckpt.filename)
    if path.is_file():
        if ckpt.sha256 is None:  # nothing to check it against: any file here would load as "the" weights
            warnings.warn(f"{path} is loaded as the {name} weights unverified: featvis has no pinned SHA-256 for "
                          f"{ckpt.filename} (its SHA-256 is {file_sha256(path)}; compare it with a trusted copy's)",
                          stacklevel=3)
        return path
    try:
        atomic_write(path, lambda tmp: _download_to(ckpt, tmp, progress))
    except WeightsError as e:
        raise WeightsError(f"{e}; or {_local_hint(name)}") from None
    except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors; a malformed URL is a ValueError
        raise WeightsError(
            f"could not download the {name} weights from {ckpt.url} ({e}). featvis looks for them at "
            f"{path}: put the file there, or {_local_hint(name)}") from e
    return path


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(model: str, weights) -> Optional[Dict[str, object]]:
    """The file that ``load_model(model, weights)`` reads, for a record: ``{"file", "file_sha256",
    "verified"}`` (``verified``: checked against a hash featvis or torchvision pins; ``None`` for a
    file the user gave, which nothing pins). ``None`` when no file is read (random or constructed
    weights, or a default not downloaded yet)."""
    from .registry import TORCHVISION
    if weights is None or (weights == "default" and model not in TORCHVISION and model != "inceptionv1"):
        return None
    if weights != "default":
        path, verified = Path(weights), None
    elif model == "inceptionv1":
        path, verified = cache_path(INCEPTION5H.filename), INCEPTION5H.sha256 is not None
    else:  # torchvision checks the hash prefix in the file name on every load (check_hash=True)
        from torchvision.models import get_model_weights
        path, verified = cache_path(os.path.basename(get_model_weights(model).DEFAULT.url)), True
    if not path.is_file():
        return None
    sha = file_sha256(path)
    if verified and model == "inceptionv1":
        verified = sha == INCEPTION5H.sha256.lower()
    return {"file": str(path.resolve()), "file_sha256": sha, "verified": verified}


def fetch_torchvision(member, name: str) -> Tuple[StateDict, str]:
    """The state dict of a torchvision weights enum member, through torchvision's own download
    machinery (cache under torch hub, hash prefix checked)."""
    path = cache_path(os.path.basename(member.url))
    cached = path.is_file()
    try:
        state_dict = member.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # torch.hub raises URLError, RuntimeError (hash), or pickle errors (bad cache)
        if cached:
            raise WeightsError(f"could not read the cached {name} weights {path} ({e}); delete the file to "
                               f"download it again from {member.url}, or {_local_hint(name)}") from e
        raise WeightsError(
            f"could not download the {name} weights from {member.url} ({e}). featvis looks for them at "
            f"{path}: put the file there, or {_local_hint(name)}") from e
    return state_dict, member.url


def read_state_dict(path, name: str, cached: bool = False) -> StateDict:
    """Read a state dict from ``path`` (CPU, tensors only), with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no weights file {str(path)!r} for {name}; weights= takes 'default', a path to "
                           "a state dict (.pth), or None for random weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, foreign objects: all mean "not a usable file"
        fix = ("delete it to download it again" if cached
               else "check that it is a complete file written by torch.save(model.state_dict(), PATH)")
        raise WeightsError(f"could not read {path} as a PyTorch state dict for {name} ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); {fix}") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # checkpoints that wrap the state dict (e.g. Lightning)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors, so it cannot be "
                           f"loaded into {name}; save one with torch.save(model.state_dict(), PATH)")
    return dict(obj)


def resolve(weights, name: str, fetch_default: Callable[[], Tuple[StateDict, str]]) -> Tuple[Optional[StateDict], Optional[str]]:
    """``(state_dict, source)`` for a ``weights=`` argument; ``(None, None)`` for random weights."""
    if weights is None:
        return None, None
    if isinstance(weights, Mapping):
        return own_keys(weights), "the state dict passed as weights="
    if isinstance(weights, str) and weights == "default":
        return fetch_default()
    if isinstance(weights, (str, os.PathLike)):
        return own_keys(read_state_dict(weights, name)), str(weights)
    raise TypeError(f"weights={weights!r}: expected 'default', a path to a state dict, a state dict, or None")


def own_keys(state_dict: Mapping) -> StateDict:
    """The state dict of the network itself: a featvis model's ``state_dict()`` (``net.`` prefix,
    normalization buffers) becomes its ``net``'s; any other passes through."""
    keys = list(state_dict)
    if keys and all(k.startswith("net.") or k in ("mean", "std") for k in keys) and any(k.startswith("net.") for k in keys):
        return {k[4:]: v for k, v in state_dict.items() if k.startswith("net.")}
    return dict(state_dict)


def _names(keys, limit: int = 8) -> str:
    keys = list(keys)
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_strict(module: nn.Module, state_dict: Mapping, source: str, name: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` with every key and shape matching, else a clear error.

    A module built on the meta device gets the loaded tensors themselves (no second copy).
    """
    state_dict = own_keys(state_dict)
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing keys ({_names(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected keys ({_names(unexpected)})" if unexpected else "",
                 f"{len(mismatched)} mismatched shapes ({_names(mismatched, 4)})" if mismatched else ""]
        raise WeightsError(
            f"the state dict from {source} does not fit {name}: " + "; ".join(p for p in parts if p)
            + f". It must be a state dict of this architecture, e.g. one saved with torch.save("
            f"featvis.load_model({name!r}, weights=None).state_dict(), PATH); weights=None gives random weights")
    # Keep the model's dtypes (a half-precision file loads as float32).
    state_dict = {k: v.to(own[k].dtype) for k, v in state_dict.items()}
    meta = any(t.is_meta for t in own.values())
    module.load_state_dict(state_dict, strict=True, assign=meta)
    assert not any(t.is_meta for t in list(module.parameters()) + list(module.buffers())), \
        f"{name}: a tensor outside the state dict was left on the meta device"
    return module


def build(factory: Callable[[], nn.Module], state_dict: Optional[Mapping], source: Optional[str], name: str) -> nn.Module:
    """``factory()`` with random weights, or built without initializing and loaded from ``state_dict``."""
    if state_dict is None:
        return factory()
    with torch.device("meta"):  # skip the random init that the loaded weights would overwrite
        module = factory()
    return load_strict(module, state_dict, source, name)
