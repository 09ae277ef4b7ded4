"""Batch rendering: many channels of one layer into a folder, resumable and crash-safe.

The job behind ``featvis render``, without argparse::

    job = prepare("inceptionv1", "mixed4a", channels="0:64", out="renders", steps=512)
    job.run()

The folder ``out`` is a :class:`featvis.folder.RenderFolder` (layout, manifest, lock)::

    manifest.json          settings, weights digest, versions, runs, and per image: seed, value, file
    parts/main.json        the same records as this writer keeps them (manifest.json is their merge)
    <layer>/<c>.png        channel c (``<c>_<k>.png`` for the k-th of ``diversity`` images)
    <layer>_sheet.png      labelled contact sheet of every image of the layer rendered so far

Crash safety: the job holds the folder's writer lock while it runs (a second job into the same
folder waits, then is refused naming the holder); images and records are written atomically and
fsynced after each batch, so a kill at any moment loses at most the batch in flight. Nothing is
written before the first batch has rendered. Image
``k`` of channel ``c`` always gets the seed ``derive_seed(seed, c, k)``; a resumed run renders the
same batches as an uninterrupted one would have, so its files are byte for byte the same.
"""
from __future__ import annotations

import datetime
import hashlib
import math
import os
import pickle
import platform
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from . import param as params
from .errors import UsageError
from .folder import MAIN, MANIFEST, MANIFEST_VERSION, RenderFolder  # noqa: F401  (MANIFEST*: re-exported)
from .hooks import activations
from .models import list_models, load_model, pick_device
from .objectives import Objective, channel, diversity, neuron
from .render import CPU_BATCH, auto_batch as render_auto_batch
from .render import render
from .rng import derive_seed

#: Weight of the diversity term: Lucid's diversity notebook uses ``channel - 1e2 * diversity``
#: with Lucid's (positive) similarity, i.e. ``channel + 100 * diversity`` with featvis's sign.
DIVERSITY_WEIGHT = 100.0
#: ``batch="auto"`` on the CPU: ``featvis.render.CPU_BATCH`` (a CPU gains little from larger
#: batches, and a small batch loses little to a kill and shows progress, and a sheet, early).
CPU_AUTO_BATCH = CPU_BATCH
#: ``batch="auto"`` on CUDA never goes above this many images: GPU throughput has saturated long
#: before, and a larger batch only loses more work to a kill.
CUDA_MAX_AUTO_IMAGES = 256
PARAMS = ("fourier", "pixel", "cppn")
FORMATS = ("png",)
#: Largest --size: a 4096 px Fourier image batch already needs GBs; beyond it is a typo.
MAX_SIZE = 4096
#: Seeds are 63-bit (featvis.rng.derive_seed) and non-negative.
MAX_SEED = 2**63 - 1
SPEC_HELP = "all, a range like 0:64, a list like 3,17,476, or a mix like 0:8,476"


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


#: No layer has more channels than this; a spec beyond it is refused before it is expanded.
MAX_CHANNELS = 1 << 20
_SPEC_PART = re.compile(r"^(\d*):(\d*)$|^(\d+)$")


def parse_channels(spec: str, count: Optional[int] = None, where: str = "the layer") -> List[int]:
    """Channel numbers from ``SPEC``: ``all``, ``0:64`` (64 excluded), ``3,17,476``, ``0:8,476``.

    Returns them sorted, without repeats. ``count`` (the layer's channels) is needed for ``all``
    and open ranges (``8:``); with it, channels out of range raise :class:`UsageError`. Without
    it only the syntax is checked (``all`` and open ends give ``[]``).
    """
    text = str(spec).strip()
    if len(text) > 100_000:
        raise UsageError(f"channel spec of {len(text)} characters is too long; use ranges like 0:64")
    if text == "all":
        return list(range(count)) if count is not None else []
    ranges = []  # (start, stop): checked before any is expanded, so "0:50000000" costs nothing
    for part in text.split(","):
        m = _SPEC_PART.match(part.strip())
        if not m:
            raise UsageError(f"bad channel spec {spec!r} (at {part.strip()!r}): expected {SPEC_HELP}")
        if m.group(3) is not None:
            ranges.append((int(m.group(3)), int(m.group(3)) + 1))
            continue
        start = int(m.group(1) or 0)
        if m.group(2) == "" and count is None:
            continue
        stop = int(m.group(2)) if m.group(2) else count
        if stop <= start:
            raise UsageError(f"bad channel spec {spec!r}: range {part.strip()!r} is empty; write start:stop with stop > start, e.g. 0:64")
        ranges.append((start, stop))
    if count is not None:
        bad = min((stop - 1 for start, stop in ranges if stop > count), default=None)
        if bad is not None:
            first = min(max(start, count) for start, stop in ranges if stop > count)
            raise UsageError(f"channel {first} is out of range: {where} has {count} channels (0..{count - 1}); "
                             f"use e.g. --channels 0:{count} or --channels all")
    elif sum(stop - start for start, stop in ranges) > MAX_CHANNELS:
        raise UsageError(f"channel spec {spec!r} selects more than {MAX_CHANNELS} channels; no layer has that many")
    chans = set()
    for start, stop in ranges:
        chans.update(range(start, stop))
    return sorted(chans)


def image_seed(seed: int, channel_index: int, k: int = 0) -> int:
    """The seed of image ``k`` of channel ``channel_index``: the same whatever batch it is in."""
    return derive_seed(seed, channel_index, k)


def stem(c: int, k: int, diversity_k: int) -> str:
    """File name stem: ``"476"``, or ``"476_2"`` when there are several images per channel."""
    return str(c) if diversity_k == 1 else f"{c}_{k}"


def batch_objective(layer: str, chans: Sequence[int], neurons: bool = False, k: int = 1,
                    weight: float = DIVERSITY_WEIGHT) -> Objective:
    """One objective for a batch: image ``i*k + j`` maximizes channel ``chans[i]`` (its centre
    neuron with ``neurons``); with ``k > 1`` each channel's ``k`` images also push apart with
    ``weight * diversity(layer)`` over their own group."""
    units = [c for c in chans for _ in range(k)]
    obj = (neuron if neurons else channel)(layer, units)
    if k > 1:
        obj = obj + weight * sum(diversity(layer, batch=list(range(i * k, i * k + k))) for i in range(len(chans)))
    return obj


def objective_template(layer: str, neurons: bool, k: int, weight: float) -> str:
    """How the manifest describes each image's objective, with ``c`` the channel."""
    base = f"{'neuron' if neurons else 'channel'}({layer}:c)"
    return base if k == 1 else f"{base} + {weight:g} * diversity({layer}) over the channel's {k} images"


def make_param(name: str, size: int, batch: int):
    """The image param by name: ``fourier``, ``pixel`` or ``cppn``, ``batch`` images of ``size``²."""
    factory = getattr(params, name, None) if name in PARAMS else None
    if factory is None:
        have = [p for p in PARAMS if hasattr(params, p)]
        raise UsageError(f"--param {name} is not available in this featvis; use one of: {', '.join(have)}")
    return factory(size, batch=batch)


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
        first = _short(e)
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


def _short(e: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, clipped."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


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


# --- the job ------------------------------------------------------------------------------------

@dataclass
class Job:
    """A validated render job (see :func:`prepare`); :meth:`run` writes the files."""

    model: torch.nn.Module
    layer: str
    channels: List[int]
    pending: List[int]
    out: Path
    batch: int
    device: torch.device
    settings: Settings
    manifest: dict  # the folder's records as last read or written (merged over its parts)
    header: dict = field(default_factory=dict)  # model, weights, settings, versions: what claims the folder
    section: dict = field(default_factory=dict)  # the layer's objective and channel count
    run_info: dict = field(default_factory=dict)  # this run's record (versions, device, batch, argv)
    force: bool = False
    writer: str = MAIN

    @property
    def folder(self) -> RenderFolder:
        return RenderFolder(self.out)

    @property
    def layer_entry(self) -> dict:
        return self.manifest.get("layers", {}).get(self.layer, {"images": {}})

    def complete(self, c: int) -> bool:
        """Whether all of channel ``c``'s images are recorded, with their files intact."""
        images, K, folder = self.layer_entry["images"], self.settings.diversity, self.folder
        return all(stem(c, k, K) in images and folder.image_ok(images[stem(c, k, K)]) for k in range(K))

    def refresh(self) -> bool:
        """Rebuild the folder's derived files (manifest.json, sheets) if they are stale or damaged."""
        return self.folder.refresh()

    def run(self, progress: bool = True, step_progress: bool = False, log=None) -> int:
        """Render the pending channels ``batch`` at a time; returns the number rendered.

        Holds the folder's writer lock throughout (another job on the folder waits, then is
        refused naming this one) and re-reads the records under it, so that two jobs never lose
        each other's records. After each batch its images, the records and the layer's sheet are
        written (atomically, with Ctrl-C held back until they are); nothing is written before the
        first batch is rendered. ``progress``: a bar over channels on stderr; ``step_progress``: a
        bar over the steps of each batch too.
        """
        folder = RenderFolder(self.out)
        with folder.lock(self.writer):
            deleted = folder.claim(self.header, force=self.force)  # checks the settings again, under the lock
            self.force = False  # a second run() of this job resumes
            self.manifest = (folder.read() or {}) if not deleted else {}
            if not self.manifest:
                self.manifest = {"layers": {}}
            self.pending = [c for c in self.channels if not self.complete(c)]
            run_index = folder.add_run(self.run_info)
            s, K = self.settings, self.settings.diversity
            done, started = 0, time.perf_counter()
            bar = tqdm(total=len(self.channels), initial=len(self.channels) - len(self.pending), unit="ch",
                       desc=self.layer, disable=not progress, dynamic_ncols=True,
                       mininterval=0.1 if sys.stderr.isatty() else 10.0)
            with bar:
                for i in range(0, len(self.pending), self.batch):
                    chans = self.pending[i:i + self.batch]
                    seeds = [image_seed(s.seed, c, k) for c in chans for k in range(K)]
                    t0 = time.perf_counter()
                    result = render(self.model, batch_objective(self.layer, chans, s.neurons, K, s.diversity_weight),
                                    param=make_param(s.param, s.size, len(seeds)), steps=s.steps, lr=s.lr,
                                    seed=seeds, device=self.device, progress=step_progress)
                    seconds = (time.perf_counter() - t0) / len(chans)
                    with _interrupts_held():
                        self._write_batch(folder, chans, seeds, result, seconds, run_index)
                    done += len(chans)
                    bar.update(len(chans))
                    bar.set_postfix(steps_per_s=f"{(i // self.batch + 1) * s.steps / (time.perf_counter() - started):.3g}")
        return done

    def _write_batch(self, folder: RenderFolder, chans, seeds, result, seconds, run_index):
        s, K = self.settings, self.settings.diversity
        entries = {}
        for j, (c, seed) in enumerate(zip([c for c in chans for _ in range(K)], seeds)):
            k = j % K
            rel = folder.image_rel(self.layer, stem(c, k, K), s.format)
            entries[stem(c, k, K)] = {
                "channel": c, "k": k, "seed": seed, "value": float(result.values[j]), "file": rel,
                "sha256": folder.save_image(rel, result.images[j]), "seconds": round(seconds, 4), "run": run_index,
            }
        self.manifest = folder.record_images(self.layer, entries, section=self.section)


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


def auto_batch(model, layer: str, settings: Settings, device: torch.device) -> int:
    """Channels per batch for ``batch="auto"``: :data:`CPU_AUTO_BATCH` on the CPU; on CUDA as many
    as :func:`featvis.render.auto_batch` finds fit in free memory (two 1-step probe renders with
    this job's param), at most :data:`CUDA_MAX_AUTO_IMAGES` images, divided among ``--diversity``."""
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    images = render_auto_batch(model, layer, settings.size, device, max_batch=CUDA_MAX_AUTO_IMAGES,
                               param=lambda n: make_param(settings.param, settings.size, n),
                               objective=lambda n: batch_objective(layer, [0] * n))
    torch.cuda.empty_cache()
    return max(1, images // settings.diversity)


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def prepare(model: str, layer: str, channels: str = "all", out="renders", weights: str = "default",
            neurons: bool = False, size: int = 128, steps: int = 512, lr: float = 0.05,
            param: str = "fourier", diversity: int = 1, seed: int = 0, device: str = "auto",
            batch="auto", format: str = "png", force: bool = False, argv: Optional[Sequence[str]] = None) -> Job:
    """Check everything a render job needs and return it, without writing anything.

    Raises :class:`UsageError` (one line: the problem and the fix) for an unknown model or layer,
    a bad channel spec, channels out of range, unreadable weights, an unwritable ``out``, or a
    folder that holds renders with other settings (unless ``force``: then it starts over there).
    Channels whose images the manifest records, with the files intact, are skipped (``pending``).
    """
    parse_channels(channels)  # the syntax, before anything slow
    for name, value, low, high in (("--size", size, 8, MAX_SIZE), ("--steps", steps, 1, None),
                                   ("--diversity", diversity, 1, 1024), ("--seed", seed, 0, MAX_SEED)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{name} {value!r}: expected a whole number")
        if value < low or (high is not None and value > high):
            upto = f" and at most {high}" if high is not None else ""
            raise UsageError(f"{name} {value}: must be at least {low}{upto}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr {lr}: must be a positive finite number, e.g. 0.05")
    if format not in FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(FORMATS)}")
    if param not in PARAMS:
        raise UsageError(f"--param {param}: use one of {', '.join(PARAMS)}")
    make_param(param, 8, 1)  # available in this build?
    if batch != "auto" and int(batch) < 1:
        raise UsageError(f"--batch {batch}: must be a positive number of channels, or auto")
    out = Path(out)
    folder = RenderFolder(out)
    folder.check_writable()
    old = None if force else folder.read()
    dev = resolve_device(device)
    net = open_model(model, weights, dev, seed)
    shape = probe_layer(net, layer, size, dev)
    folder.check_writable([layer])
    if neurons and len(shape) != 3:
        raise UsageError(f"--neurons needs a spatial layer, but {layer!r} gives shape {shape}; drop --neurons or pick a conv layer")
    chans = parse_channels(channels, shape[0], f"{layer} of {model}")
    if not chans:
        raise UsageError(f"--channels {channels} selects no channel; expected {SPEC_HELP}")

    settings = Settings(neurons, int(size), int(steps), float(lr), param, int(diversity),
                        DIVERSITY_WEIGHT, int(seed), format, dev.type)
    header = {"model": model, "weights": {"spec": weights, "sha256": weights_digest(net)},
              "settings": asdict(settings), "featvis": __version__, "torch": torch.__version__,
              "device": _device_label(dev)}
    if old is not None and old.get("settings") is not None:
        from .folder import header_differences
        diffs = header_differences(old, header)
        if diffs:
            raise UsageError(f"{out} holds renders made with other settings ({'; '.join(diffs)}); "
                             "repeat those settings to resume, choose another --out, or pass --force to start over there")
    section = {"objective": objective_template(layer, neurons, settings.diversity, DIVERSITY_WEIGHT),
               "channels": shape[0]}
    n = auto_batch(net, layer, settings, dev) if batch == "auto" else int(batch)
    run_info = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "featvis": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": header["device"], "batch": n, "layer": layer, "channels": channels,
        "argv": list(argv) if argv is not None else None,
    }
    job = Job(net, layer, chans, [], out, n, dev, settings, old or {"layers": {}}, header, section, run_info, force)
    job.pending = [c for c in chans if not job.complete(c)]
    return job


# --- sheets ------------------------------------------------------------------------------------

def write_sheet(out: Path, manifest: dict, layer: str, cols: Optional[int] = None, labels: bool = True,
                path=None) -> Optional[Path]:
    """The contact sheet of ``layer``'s recorded images; see :meth:`featvis.folder.RenderFolder.write_sheet`."""
    return RenderFolder(out).write_sheet(layer, manifest, cols=cols, labels=labels, path=path)
