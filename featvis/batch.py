"""Batch rendering: the pieces of a render job (settings, checks, the batch objective, sheets).

The job itself (one layer or many, shards, resume) is :mod:`featvis.job`, which builds on these::

    job = featvis.job.prepare_job("inceptionv1", ["mixed4a"], channels="0:64", out="renders", steps=512)
    job.run()

The folder ``out`` is a :class:`featvis.folder.RenderFolder` (layout, manifest, lock)::

    manifest.json          settings, weights digest, versions, runs, and per image: seed, value, file
    parts/main.json        the same records as this writer keeps them (manifest.json is their merge)
    <layer>/<c>.png        channel c (``<c>_<k>.png`` for the k-th of ``diversity`` images)
    <layer>_sheet.png      labelled contact sheet of every image of the layer rendered so far
"""
from __future__ import annotations

import hashlib
import os
import pickle
import platform
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import param as params
from .errors import UsageError
from .folder import MANIFEST, MANIFEST_VERSION, RenderFolder  # noqa: F401  (MANIFEST*: re-exported)
from .models import activations, list_models, load_model, pick_device
from .objectives import Objective, channel, diversity, neuron, scaled
from .render import CPU_BATCH, auto_batch as render_auto_batch
from .render import DEFAULT_LR  # noqa: F401  (the CLI's --lr default when the param has none)
from .units import SPEC_HELP, ChannelSpec, parse_channels  # noqa: F401  (parse_channels: old import path)

#: Weight of the diversity term, relative to the objective (see :func:`featvis.objectives.scaled`):
#: each channel's K images maximize ``channel + w * |channel| * diversity`` with ``|channel|`` the
#: group's mean value at that step, held constant. Lucid's notebook used a fixed
#: ``channel - 1e2 * diversity``, tuned to InceptionV1's activation sizes; a fixed 100 washes the
#: images out on a model whose units reach 0.3 (the hand-coded one). Relative, one weight fits all.
DIVERSITY_WEIGHT = 0.5
#: ``batch="auto"`` on the CPU: ``featvis.render.CPU_BATCH`` (a CPU gains little from larger
#: batches, and a small batch loses little to a kill and shows progress, and a sheet, early).
CPU_AUTO_BATCH = CPU_BATCH
PARAMS = ("fourier", "pixel", "cppn")
FORMATS = ("png",)
#: Largest --size: a 4096 px Fourier image batch already needs GBs; beyond it is a typo.
MAX_SIZE = 4096
#: Seeds are 63-bit (featvis.rng.derive_seed) and non-negative.
MAX_SEED = 2**63 - 1


# --- what to render ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """Everything that decides the pixels. One output folder holds renders of one Settings."""

    neurons: bool = False
    size: int = 128
    steps: int = 512
    lr: float = 0.05
    param: str = "fourier"
    diversity: int = 1
    diversity_weight: float = DIVERSITY_WEIGHT
    seed: int = 0
    format: str = "png"
    device: str = "cpu"  # the device type that ran ("cpu", "cuda"): the two round differently
    deterministic: bool = True  # deterministic kernels (on CUDA: the same bytes from a resumed run)
    preset: Optional[str] = None  # a featvis.presets recipe (its param, transforms, lr schedule), or None


def batch_objective(layer: str, chans: Sequence[int], neurons: bool = False, k: int = 1,
                    weight: float = DIVERSITY_WEIGHT) -> Objective:
    """One objective for a batch: image ``i*k + j`` maximizes channel ``chans[i]`` (its centre
    neuron with ``neurons``); with ``k > 1`` each channel's ``k`` images also push apart with
    ``weight * |objective| * diversity(layer)`` over their own group (see
    :func:`featvis.objectives.scaled`; ``Result.terms`` then holds the two parts)."""
    units = [c for c in chans for _ in range(k)]
    obj = (neuron if neurons else channel)(layer, units)
    if k > 1:
        div = sum(diversity(layer, batch=list(range(i * k, i * k + k))) for i in range(len(chans)))
        obj = scaled(obj, div, weight, group=k, label="diversity")
    return obj


def objective_template(layer: str, neurons: bool, k: int, weight: float) -> str:
    """How the manifest describes each image's objective, with ``c`` the channel."""
    base = f"{'neuron' if neurons else 'channel'}({layer}:c)"
    return base if k == 1 else (f"{base} + {weight:g} * |{base}| * diversity({layer}) over the channel's {k} images "
                                "(|...| the group's mean objective, held constant); 'value' is the first term, "
                                "'diversity' the second")


def make_param(name: str, size: int, batch: int):
    """The image param by name: ``fourier``, ``pixel`` or ``cppn``, ``batch`` images of ``size``²."""
    factory = getattr(params, name, None) if name in PARAMS else None
    if factory is None:
        have = [p for p in PARAMS if hasattr(params, p)]
        raise UsageError(f"--param {name} is not available in this featvis; use one of: {', '.join(have)}")
    return factory(size, batch=batch)


def recipe(settings: Settings, batch: int) -> dict:
    """:func:`featvis.render` keyword arguments for ``batch`` images of ``settings``: ``param``,
    ``steps``, ``lr``, and with a preset its ``transforms`` and ``optimizer`` (lr schedule) too."""
    if settings.preset:
        from .presets import resolve
        return resolve(settings.preset, batch=batch, steps=settings.steps, lr=settings.lr, size=settings.size)
    return dict(param=make_param(settings.param, settings.size, batch), steps=settings.steps, lr=settings.lr)


# --- checks (nothing is written until all pass) ------------------------------------------------

def _weights_arg(weights: str):
    if weights in ("default", "none"):
        return None if weights == "none" else "default"
    path = Path(weights)
    if path.is_dir():
        raise UsageError(f"--weights {weights}: it is a folder; pass the state dict file in it (a .pth/.pt file "
                         "saved with torch.save), or --weights default|none")
    if not path.is_file():
        raise UsageError(f"--weights {weights}: no such file; pass --weights default, none, or the path of a state dict saved with torch.save")
    if not os.access(path, os.R_OK):
        raise UsageError(f"--weights {weights}: the file is not readable; fix its permissions or pass --weights default|none")
    return str(path)


def open_model(name: str, weights: str = "default", device="cpu", seed: int = 0):
    """``load_model`` with one-line errors. ``weights="none"`` draws the random init from
    ``seed``, so a resumed run (and its weights digest) gets the same network."""
    known = [n for n, _ in list_models()]
    if name not in known:
        import difflib
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UsageError(f"unknown model {name!r}{hint} (see: featvis models)")
    arg = _weights_arg(weights)
    try:
        if arg is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return load_model(name, None, device=device)
        return load_model(name, arg, device=device)
    except Exception as e:  # the builder's own error: a bad file, a failed download, wrong keys
        # a WeightsError is written for users: keep all of it (the cause, the cache path)
        first = _short(e, limit=None if type(e).__name__ == "WeightsError" else 160)
        if arg not in (None, "default"):
            if isinstance(e, pickle.UnpicklingError) or "weights only load failed" in str(e).lower():
                first = ("it holds Python objects besides tensors, which featvis does not unpickle because that "
                         "could run code")
            raise UsageError(f"--weights {weights}: cannot load it into {name} ({first}); "
                             "pass a state dict saved with torch.save for this model, or --weights default|none") from e
        from .models import WeightsError
        if isinstance(e, WeightsError):  # its message says what failed and what to do, in full
            raise UsageError(f"cannot load {name} with --weights {weights}: {' '.join(str(e).split())}") from e
        raise UsageError(f"cannot load {name} with --weights {weights} ({first}); "
                         "pass --weights PATH to a local state dict, or --weights none for random weights") from e


def _short(e: BaseException, limit: Optional[int] = 160) -> str:
    """An exception's message on one line, clipped to ``limit`` characters (``None``: whole)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): which network this is."""
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def resolve_device(device: str = "auto") -> torch.device:
    """``--device`` as a torch device; asking for CUDA where there is none is a usage error."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: torch sees no CUDA device here; use --device cpu (or auto)")
    try:
        return pick_device(device)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--device {device}: {e}") from e


def probe_layer(model, layer: str, size: int, device) -> tuple:
    """The output shape of ``layer`` for one ``size``² image, (C, ...), with one-line errors."""
    try:
        out = activations(model, torch.full((1, 3, size, size), 0.5, device=device), [layer])[layer]
    except KeyError as e:
        raise UsageError(e.args[0]) from e
    except RuntimeError as e:
        first = _short(e)
        memory = any(w in str(e).lower() for w in ("memory", "alloc"))
        fix = "try a smaller --size" if memory else "if the layer's input shrank to nothing, try a larger --size; else another layer"
        raise UsageError(f"cannot run {getattr(model, 'name', 'the model')} up to {layer!r} at --size {size} ({first}); "
                         f"{fix}") from e
    if out.dim() < 2:
        raise UsageError(f"layer {layer!r} gives no channels (output shape {tuple(out.shape)}); pick another layer (see: featvis layers)")
    return tuple(out.shape[1:])


@contextmanager
def _interrupts_held():
    """Hold Ctrl-C (and SIGTERM) back while a batch's files are written, then act on it: what is
    complete is written completely."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


def auto_batch(model, layer: str, settings: Settings, device: torch.device, channels: Optional[int] = None) -> int:
    """Channels per batch for ``batch="auto"``: :data:`CPU_AUTO_BATCH` on the CPU; on CUDA as many
    as :func:`featvis.render.auto_batch` finds fit in free memory (two 1-step probe renders with
    this job's param), divided among ``--diversity``: all ``channels`` in one batch when they fit
    (a GPU keeps gaining from larger batches until its memory is full)."""
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    cap = None if channels is None else channels * settings.diversity
    images = render_auto_batch(model, layer, settings.size, device, max_batch=cap,
                               param=lambda n: recipe(settings, n)["param"],
                               objective=lambda n: batch_objective(layer, [0] * n))
    torch.cuda.empty_cache()
    return max(1, images // settings.diversity)


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# --- sheets ------------------------------------------------------------------------------------

from .folder import SHEET_MIN_CELL, sheet_title  # noqa: E402,F401  (their owner is the folder)


def write_sheet(out: Path, manifest: dict, layer: str, cols: Optional[int] = None, labels: bool = True,
                path=None, cell: Optional[int] = None, title: bool = True) -> Optional[Path]:
    """The contact sheet of ``layer``'s recorded images; see :meth:`featvis.folder.RenderFolder.write_sheet`."""
    return RenderFolder(out).write_sheet(layer, manifest, cols=cols, labels=labels, path=path, cell=cell, title=title)
