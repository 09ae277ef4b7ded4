"""Batch rendering: many channels of one layer into a folder, resumable and crash-safe.

The job behind ``featvis render``, without argparse::

    job = prepare("inceptionv1", "mixed4a", channels="0:64", out="renders", steps=512)
    job.run()

Folder layout (``out``)::

    manifest.json          settings, weights digest, versions, runs, and per image: seed, value, file
    <layer>/<c>.png        channel c (``<c>_<k>.png`` for the k-th of ``diversity`` images)
    <layer>_sheet.png      labelled contact sheet of every image of the layer rendered so far

Crash safety: images are written to a temporary file and renamed, and the manifest is rewritten
(atomically) after each batch, so a kill at any moment loses at most the batch in flight. Image
``k`` of channel ``c`` always gets the seed ``derive_seed(seed, c, k)``; a resumed run renders the
same batches as an uninterrupted one would have, so its files are byte for byte the same.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import pickle
import platform
import re
import signal
import sys
import tempfile
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
from .hooks import activations
from .io import atomic_write, save_image, sheet
from .models import list_models, load_model, pick_device
from .objectives import Objective, channel, diversity, neuron
from .render import CPU_BATCH, auto_batch as render_auto_batch
from .render import render
from .rng import derive_seed

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: Weight of the diversity term: Lucid's diversity notebook uses ``channel - 1e2 * diversity``
#: with Lucid's (positive) similarity, i.e. ``channel + 100 * diversity`` with featvis's sign.
DIVERSITY_WEIGHT = 100.0
#: ``batch="auto"`` on the CPU: ``featvis.render.CPU_BATCH`` (a CPU gains little from larger
#: batches, and a small batch loses little to a kill and shows progress, and a sheet, early).
CPU_AUTO_BATCH = CPU_BATCH
PARAMS = ("fourier", "pixel", "cppn")
FORMATS = ("png",)
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
    deterministic: bool = True  # deterministic kernels (on CUDA: the same bytes from a resumed run)


_SPEC_PART = re.compile(r"^(\d*):(\d*)$|^(\d+)$")


def parse_channels(spec: str, count: Optional[int] = None, where: str = "the layer") -> List[int]:
    """Channel numbers from ``SPEC``: ``all``, ``0:64`` (64 excluded), ``3,17,476``, ``0:8,476``.

    Returns them sorted, without repeats. ``count`` (the layer's channels) is needed for ``all``
    and open ranges (``8:``); with it, channels out of range raise :class:`UsageError`. Without
    it only the syntax is checked (``all`` and open ends give ``[]``).
    """
    text = str(spec).strip()
    if text == "all":
        return list(range(count)) if count is not None else []
    chans = set()
    for part in text.split(","):
        m = _SPEC_PART.match(part.strip())
        if not m:
            raise UsageError(f"bad channel spec {spec!r} (at {part.strip()!r}): expected {SPEC_HELP}")
        if m.group(3) is not None:
            chans.add(int(m.group(3)))
            continue
        start = int(m.group(1) or 0)
        if m.group(2) == "" and count is None:
            continue
        stop = int(m.group(2)) if m.group(2) else count
        if stop <= start:
            raise UsageError(f"bad channel spec {spec!r}: range {part.strip()!r} is empty; write start:stop with stop > start, e.g. 0:64")
        chans.update(range(start, stop))
    if count is not None:
        bad = sorted(c for c in chans if c >= count)
        if bad:
            raise UsageError(f"channel {bad[0]} is out of range: {where} has {count} channels (0..{count - 1}); "
                             f"use e.g. --channels 0:{count} or --channels all")
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
                first = "not a file of tensors that torch.load(weights_only=True) can read"
            raise UsageError(f"--weights {weights}: cannot load it into {name} ({first}); "
                             "pass a state dict saved with torch.save for this model, or --weights default|none") from e
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
        raise UsageError(f"cannot run {getattr(model, 'name', 'the model')} up to {layer!r} at --size {size} ({first}); "
                         "try a larger --size or another layer") from e
    if out.dim() < 2:
        raise UsageError(f"layer {layer!r} gives no channels (output shape {tuple(out.shape)}); pick another layer (see: featvis layers)")
    return tuple(out.shape[1:])


def check_out_dir(out: Path) -> None:
    """``out`` must be (or be creatable as) a folder we can write to; probes without leaving a file."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: it is a file, not a folder; choose another --out")
    base = out
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"--out {out}: {base} is a file, not a folder; choose another --out")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".featvis-write-test-", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write in {base} ({e.strerror}); choose a folder you can write to") from e


def read_manifest(out: Path) -> Optional[dict]:
    """The folder's manifest, ``None`` if there is none; :class:`UsageError` if it is not one."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("featvis_manifest") != MANIFEST_VERSION:
            raise ValueError(f"no 'featvis_manifest': {MANIFEST_VERSION} entry")
        for key in ("model", "weights", "settings", "layers"):
            data[key]  # noqa: B018 (presence check)
        return data
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a featvis manifest ({e}); choose another --out, or pass --force to start over there") from e


def _differences(old: dict, new: dict) -> List[str]:
    diffs = []
    if old["model"] != new["model"]:
        diffs.append(f"model {old['model']} -> {new['model']}")
    if old["weights"]["sha256"] != new["weights"]["sha256"]:
        diffs.append(f"weights {old['weights']['spec']} -> {new['weights']['spec']} (a different network)")
    for key, value in new["settings"].items():
        before = old["settings"].get(key, getattr(Settings, key, None))  # a setting added since: its default
        if before != value:
            diffs.append(f"{key} {before} -> {value}")
    return diffs


def image_ok(out: Path, entry: dict) -> bool:
    """Whether a manifest entry's file is there with the bytes the manifest recorded."""
    path = out / entry["file"]
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    except OSError:
        return False


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
    manifest: dict
    fresh: bool  # no usable manifest: start one (dropping an old one's entries, with force)
    stale_files: List[str] = field(default_factory=list)
    graph: object = False  # render(graph=...): capture each step in a CUDA graph (changes no pixel)

    @property
    def layer_entry(self) -> dict:
        return self.manifest["layers"][self.layer]

    def complete(self, c: int) -> bool:
        """Whether all of channel ``c``'s images are recorded, with their files intact."""
        images, K = self.layer_entry["images"], self.settings.diversity
        return all(stem(c, k, K) in images and image_ok(self.out, images[stem(c, k, K)]) for k in range(K))

    def run(self, progress: bool = True, step_progress: bool = False, log=None) -> int:
        """Render the pending channels ``batch`` at a time; returns the number rendered.

        After each batch its images, the manifest and the layer's sheet are written (atomically,
        with Ctrl-C held back until they are). ``progress``: a bar over channels on stderr;
        ``step_progress``: a bar over the steps of each batch too.
        """
        self._start()
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
                                seed=seeds, device=self.device, progress=step_progress,
                                deterministic=s.deterministic, graph=self.graph)
                seconds = (time.perf_counter() - t0) / len(chans)
                with _interrupts_held():
                    self._write_batch(chans, seeds, result, seconds)
                done += len(chans)
                bar.update(len(chans))
                bar.set_postfix(steps_per_s=f"{(i // self.batch + 1) * s.steps / (time.perf_counter() - started):.3g}")
        return done

    def _start(self):
        """Create the folder and write the manifest that claims it for these settings."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        for rel in self.stale_files:  # --force: files of the renders the old manifest recorded
            path = self.out / rel
            if path.is_file():
                path.unlink()

    def _write_batch(self, chans, seeds, result, seconds):
        s, K = self.settings, self.settings.diversity
        images = self.layer_entry["images"]
        run_index = len(self.manifest["runs"]) - 1
        for j, (c, seed) in enumerate(zip([c for c in chans for _ in range(K)], seeds)):
            k = j % K
            rel = f"{self.layer}/{stem(c, k, K)}.{s.format}"
            save_image(result.images[j], self.out / rel)
            images[stem(c, k, K)] = {
                "channel": c, "k": k, "seed": seed, "value": float(result.values[j]), "file": rel,
                "sha256": hashlib.sha256((self.out / rel).read_bytes()).hexdigest(),
                "seconds": round(seconds, 4), "run": run_index,
            }
        self.layer_entry["images"] = dict(sorted(images.items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
        self._write_manifest()
        write_sheet(self.out, self.manifest, self.layer)

    def _write_manifest(self):
        text = json.dumps(self.manifest, indent=1) + "\n"
        atomic_write(self.out / MANIFEST, lambda tmp: Path(tmp).write_text(text))


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
            batch="auto", format: str = "png", force: bool = False, argv: Optional[Sequence[str]] = None,
            deterministic: bool = True, graph=False) -> Job:
    """Check everything a render job needs and return it, without writing anything.

    Raises :class:`UsageError` (one line: the problem and the fix) for an unknown model or layer,
    a bad channel spec, channels out of range, unreadable weights, an unwritable ``out``, or a
    folder that holds renders with other settings (unless ``force``: then it starts over there).
    Channels whose images the manifest records, with the files intact, are skipped (``pending``).
    """
    parse_channels(channels)  # the syntax, before anything slow
    for name, value, low in (("--size", size, 8), ("--steps", steps, 1), ("--diversity", diversity, 1)):
        if int(value) < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if not lr > 0:
        raise UsageError(f"--lr {lr}: must be positive")
    if format not in FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(FORMATS)}")
    if param not in PARAMS:
        raise UsageError(f"--param {param}: use one of {', '.join(PARAMS)}")
    make_param(param, 8, 1)  # available in this build?
    if batch != "auto" and int(batch) < 1:
        raise UsageError(f"--batch {batch}: must be a positive number of channels, or auto")
    out = Path(out)
    check_out_dir(out)
    old = None if force else read_manifest(out)
    dev = resolve_device(device)
    net = open_model(model, weights, dev, seed)
    shape = probe_layer(net, layer, size, dev)
    if neurons and len(shape) != 3:
        raise UsageError(f"--neurons needs a spatial layer, but {layer!r} gives shape {shape}; drop --neurons or pick a conv layer")
    chans = parse_channels(channels, shape[0], f"{layer} of {model}")
    if not chans:
        raise UsageError(f"--channels {channels} selects no channel; expected {SPEC_HELP}")

    settings = Settings(neurons, int(size), int(steps), float(lr), param, int(diversity),
                        DIVERSITY_WEIGHT, int(seed), format, dev.type, bool(deterministic))
    new = {
        "featvis_manifest": MANIFEST_VERSION, "model": model,
        "weights": {"spec": weights, "sha256": weights_digest(net)},
        "settings": asdict(settings),
    }
    stale: List[str] = []
    if old is not None:
        diffs = _differences(old, new)
        if diffs:
            raise UsageError(f"{out} holds renders made with other settings ({'; '.join(diffs)}); "
                             "repeat those settings to resume, choose another --out, or pass --force to start over there")
        manifest = old
    else:
        if force:  # start over: the old manifest's files go (only those, never anything else)
            try:
                previous = read_manifest(out)
            except UsageError:
                previous = None
            for name, sec in (previous or {}).get("layers", {}).items():
                stale += [e["file"] for e in sec.get("images", {}).values()] + [f"{name}_sheet.png"]
        manifest = dict(new, layers={})
        manifest["runs"] = []
    section = manifest["layers"].setdefault(layer, {"images": {}})
    section["objective"] = objective_template(layer, neurons, settings.diversity, DIVERSITY_WEIGHT)
    section["channels"] = shape[0]
    n = auto_batch(net, layer, settings, dev, len(chans)) if batch == "auto" else int(batch)
    manifest["featvis"], manifest["torch"] = __version__, torch.__version__
    manifest["device"] = _device_label(dev)
    manifest["runs"] = manifest.get("runs", []) + [{
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "featvis": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": manifest["device"], "batch": n, "layer": layer, "channels": channels,
        "argv": list(argv) if argv is not None else None,
    }]
    job = Job(net, layer, chans, [], out, n, dev, settings, manifest, old is None, stale, graph=graph)
    job.pending = [c for c in chans if not job.complete(c)]
    return job


# --- sheets ------------------------------------------------------------------------------------

def write_sheet(out: Path, manifest: dict, layer: str, cols: Optional[int] = None, labels: bool = True,
                path=None) -> Optional[Path]:
    """The contact sheet of ``layer``'s recorded images (``out/<layer>_sheet.png`` by default).

    Rows hold one channel's ``diversity`` images each when there are several per channel.
    Returns the path, or ``None`` when the layer has no images yet.
    """
    out = Path(out)
    entries = list(manifest["layers"][layer]["images"].items())
    if not entries:
        return None
    K = int(manifest["settings"].get("diversity", 1))
    cols = cols or (K if K > 1 else math.ceil(math.sqrt(len(entries))))
    path = Path(path) if path is not None else out / f"{layer}_sheet.png"
    sheet([out / e["file"] for _, e in entries], labels=[name for name, _ in entries] if labels else None,
          cols=cols, path=path)
    return path
