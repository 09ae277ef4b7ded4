"""Pretrained weights: download once into the torch hub cache (checked), read local files, load strictly.

``weights=`` in :func:`featvis.load_model` is ``"default"`` (the model's canonical weights, fetched
on first use), a path to a local state dict (``.pth``/``.pt`` written by ``torch.save``, or
``.safetensors``), ``hf-hub:ORG/REPO`` (a checkpoint on the Hugging Face Hub, through
``huggingface_hub``'s cache; ``hf-hub:ORG/REPO/FILE@REVISION`` names a file and pins a revision),
an in-memory state dict, or ``None`` (random init).
Every problem raises :class:`WeightsError` with what failed and what to do instead.

Security: safetensors files hold tensors only and are read as such (the safe format: from a hub
repo that offers both, featvis takes the ``.safetensors`` file). A ``.pth`` checkpoint is a
pickle, and unpickling can run code. featvis reads every checkpoint
(hub cache, torchvision's files, ``--weights PATH``) with ``torch.load(weights_only=True)``, which
rebuilds tensors and plain containers only and refuses anything else; a cached file whose hash
is known (torchvision's file names carry a SHA-256 prefix; pinned :class:`Checkpoint` hashes) is
checked on every load, not only after the download. :func:`load_model` also sets
``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` while a plugin's builder runs, so its ``torch.load`` calls are
weights-only too.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from ..progress import bar as tqdm  # the notebook widget in Jupyter, quiet with FEATVIS_PROGRESS=0

from ..errors import one_line
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


def file_sha256(path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: Optional[str], name: str, url: str) -> None:
    """A cached file must have the SHA-256 featvis knows for it (``expected``: the whole hash or
    a prefix of it; ``None``: not known, nothing to check)."""
    if not expected:
        return
    got = file_sha256(path)
    if not got.startswith(expected.lower()):
        raise WeightsError(f"the cached {name} weights {path} have SHA-256 {got[:16]}..., not the published "
                           f"{expected[:16]}...: the file is damaged or was replaced, and featvis will not load it. "
                           f"Delete it to download it again from {url}, or {_local_hint(name)}")


def fetch(ckpt: Checkpoint, name: str, progress: bool = True) -> Path:
    """The cached file of ``ckpt``, downloading it first if it is not in the cache yet; a pinned
    hash is checked on every call, not only after a download.

    The download goes to a temporary file next to the cache entry and is renamed into place only
    once complete and checked, so a failure leaves nothing behind.
    """
    path = cache_path(ckpt.filename)
    if path.is_file():
        if ckpt.sha256 is None:  # nothing to check it against: any file here would load as "the" weights
            warnings.warn(f"{path} is loaded as the {name} weights unverified: featvis has no pinned SHA-256 for "
                          f"{ckpt.filename} (its SHA-256 is {file_sha256(path)}; compare it with a trusted copy's)",
                          stacklevel=3)
        else:
            verify(path, ckpt.sha256, name, ckpt.url)
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


#: torchvision's (and torch hub's) file names carry the first hex digits of the file's SHA-256:
#: ``resnet18-f37072fd.pth``.
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


def weights_file(model: str, weights) -> Optional[Dict[str, object]]:
    """The file that ``load_model(model, weights)`` reads, for a record: ``{"file", "file_sha256",
    "verified"}`` (``verified``: checked against a hash featvis or torchvision pins; ``None`` for a
    file the user gave, which nothing pins). ``None`` when no file is read (random or constructed
    weights, or a default not downloaded yet)."""
    from .registry import TORCHVISION
    if weights is None or (weights == "default" and model not in TORCHVISION and model != "inceptionv1"):
        return None
    if isinstance(weights, str) and weights.startswith(HUB_PREFIX):  # the cached file and the commit it came from
        path, info = hub_file(weights, model)
        return {"file": str(path), "file_sha256": file_sha256(path), "verified": None, "hub": dict(info)}
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
    """The state dict of a torchvision weights enum member: downloaded once into the torch hub
    cache, then on every load checked against the SHA-256 prefix in its file name and read with
    ``weights_only=True`` (torchvision's own loader unpickles without it)."""
    filename = os.path.basename(member.url.split("?")[0])
    path = cache_path(filename)
    found = HASH_IN_NAME.search(filename)
    prefix = found.group(1) if found else None
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(member.url, str(path), hash_prefix=prefix, progress=True)
        except Exception as e:  # URLError, timeouts, a hash mismatch (RuntimeError)
            raise WeightsError(
                f"could not download the {name} weights from {member.url} ({' '.join(str(e).split())[:200]}). "
                f"featvis looks for them at {path}: put the file there, or {_local_hint(name)}") from e
    verify(path, prefix, name, member.url)
    return read_state_dict(path, name, cached=True), member.url


#: ``weights="hf-hub:ORG/REPO"``: a checkpoint on the Hugging Face Hub.
HUB_PREFIX = "hf-hub:"
#: The files tried in a hub repo when the spec names none, safest first (safetensors holds no code).
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth")
#: Hub specs resolved in this process: spec -> (cached path, {"repo", "revision", "file"}).
_HUB: Dict[str, Tuple[Path, Dict[str, str]]] = {}


def parse_hub(spec: str) -> Tuple[str, Optional[str], Optional[str]]:
    """``"hf-hub:ORG/REPO[/FILE][@REVISION]"`` -> ``(repo, file or None, revision or None)``."""
    rest = spec[len(HUB_PREFIX):]
    rest, at, revision = rest.partition("@")
    parts = [p for p in rest.split("/")]
    if len(parts) < 2 or not all(parts) or (at and not revision):
        raise WeightsError(f"--weights {spec}: expected hf-hub:ORG/REPO, optionally /FILE and @REVISION "
                           "(e.g. hf-hub:timm/resnet18.a1_in1k or hf-hub:ORG/REPO/model.safetensors@main)")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None, revision or None


def hub_file(spec: str, name: str) -> Tuple[Path, Dict[str, str]]:
    """The local path of a hub checkpoint (downloaded into huggingface_hub's cache on first use,
    ``HF_HUB_OFFLINE=1`` reads the cache only) and ``{"repo", "revision", "file"}``: the commit it
    came from, for the record. Without a FILE, the first of :data:`HUB_FILES` the repo has."""
    if spec in _HUB:
        return _HUB[spec]
    repo, filename, revision = parse_hub(spec)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:
        raise WeightsError(f"--weights {spec} needs huggingface_hub, which is not installed here: "
                           "pip install featvis[hub]") from None
    last = None
    for candidate in ([filename] if filename else HUB_FILES):
        try:
            path = Path(hf_hub_download(repo, candidate, revision=revision))
        except (EntryNotFoundError, LocalEntryNotFoundError) as e:  # not in the repo / not in the offline cache
            last = e
            continue
        except Exception as e:  # no such repo or revision, no network, refused: one line
            raise WeightsError(f"could not get {spec} for {name} from the Hugging Face Hub ({one_line(e, 200)}); "
                               "check the repo name and revision, or download the file and pass --weights PATH") from e
        parts = path.parts
        commit = parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else (revision or "")
        _HUB[spec] = (path, {"repo": repo, "revision": commit, "file": candidate})
        return _HUB[spec]
    tried = ", ".join([filename] if filename else HUB_FILES)
    raise WeightsError(f"could not get {spec} for {name}: the repo has none of {tried} in reach "
                       f"({one_line(last, 160)}); name the file (hf-hub:{repo}/FILE), check the network "
                       "(HF_HUB_OFFLINE=1 reads only the local cache), or pass --weights PATH")


def read_safetensors(path: Path, name: str) -> StateDict:
    """The tensors of a ``.safetensors`` file (CPU), with errors that say what to do."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise WeightsError(f"{path} is a safetensors file, which needs the safetensors library: "
                           "pip install featvis[hub] (or pip install safetensors)") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as e:  # a truncated or foreign file: SafetensorError, OSError
        raise WeightsError(f"could not read {path} as a safetensors file for {name} ({one_line(e, 200)}); check that "
                           "it is complete, written by safetensors.torch.save_file") from e


def read_state_dict(path, name: str, cached: bool = False) -> StateDict:
    """Read a state dict from ``path`` (CPU, tensors only; ``.safetensors`` or a ``torch.save``
    file), with errors that say what to do."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; weights= takes the path of a state dict file (.pth/.pt/.safetensors) in it")
    if not path.is_file():
        raise WeightsError(f"no weights file {str(path)!r} for {name}; weights= takes 'default', a path to "
                           "a state dict (.pth or .safetensors), hf-hub:ORG/REPO, or None for random weights")
    if path.suffix.lower() == ".safetensors":
        return read_safetensors(path, name)
    try:
        with warnings.catch_warnings():  # torch's own multi-line advice (weights_only=False) is not for users
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, foreign objects: all mean "not a usable file"
        fix = ("delete it to download it again" if cached
               else "check that it is a complete file written by torch.save(model.state_dict(), PATH)")
        if isinstance(e, pickle.UnpicklingError) or "weights only load failed" in str(e).lower():
            why = ("it holds Python objects other than tensors, which featvis does not unpickle because that could "
                   "run code (torch.load weights_only=True)")
        else:
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        raise WeightsError(f"could not read {path} as a PyTorch state dict for {name} ({why}); {fix}") from e
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
        if fetch_default is None:
            raise WeightsError(f"{name} has no default weights here; pass a path, hf-hub:ORG/REPO or None")
        return fetch_default()
    if isinstance(weights, str) and weights.startswith(HUB_PREFIX):
        path, info = hub_file(weights, name)
        return own_keys(read_state_dict(path, name, cached=True)), f"{weights} (revision {info['revision']})"
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


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): which network this is."""
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
