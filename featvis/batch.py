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
import signal
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import __version__
from . import param as params
from .errors import UsageError
from .io import atomic_write, save_image, sheet
from .models import activations, list_models, load_model, pick_device
from .models.weights import weights_file
from .objectives import Objective, channel, diversity, neuron, scaled
from .render import CPU_BATCH, auto_batch as render_auto_batch
from .render import DEFAULT_LR, render
from .rng import derive_seed
from .units import SPEC_HELP, ChannelSpec, parse_channels  # noqa: F401  (parse_channels: old import path)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: Weight of the diversity term, relative to the objective (see :func:`featvis.objectives.scaled`):
#: each channel's K images maximize ``channel + w * |channel| * diversity`` with ``|channel|`` the
#: group's mean value at that step, held constant. Lucid's notebook used a fixed
#: ``channel - 1e2 * diversity``, tuned to InceptionV1's activation sizes; a fixed 100 washes the
#: images out on a model whose units reach 0.3 (the hand-coded one). Relative, one weight fits all.
DIVERSITY_WEIGHT = 0.5
#: ``batch="auto"`` on the CPU: ``featvis.render.CPU_BATCH`` (a CPU gains little from larger
#: batches, and a small batch loses little to a kill and shows progress, and a sheet, early).
CPU_AUTO_BATCH = CPU_BATCH
#: ``batch="auto"`` on CUDA never goes above this many images: GPU throughput has saturated long
#: before, and a larger batch only loses more work to a kill.
CUDA_MAX_AUTO_IMAGES = 256
PARAMS = ("fourier", "pixel", "cppn")
FORMATS = ("png",)


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
        # a WeightsError is written for users: keep all of it (the cause, the cache path)
        first = _short(e, limit=None if type(e).__name__ == "WeightsError" else 160)
        if arg not in (None, "default"):
            if isinstance(e, pickle.UnpicklingError) or "weights only load failed" in str(e).lower():
                first = "not a file of tensors that torch.load(weights_only=True) can read"
            raise UsageError(f"--weights {weights}: cannot load it into {name} ({first}); "
                             "pass a state dict saved with torch.save for this model, or --weights default|none") from e
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
        if old["settings"].get(key) != value:
            diffs.append(f"{key} {old['settings'].get(key)} -> {value}")
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
        with Ctrl-C held back until they are). ``progress``: one bar on stderr over the steps of
        all pending batches, with the channels done beside it (``step_progress`` is accepted for
        compatibility and ignored: the one bar already counts steps).
        """
        self._start()
        s, K = self.settings, self.settings.diversity
        done, batches = 0, math.ceil(len(self.pending) / self.batch)
        before = len(self.channels) - len(self.pending)
        # One bar over the steps of every pending batch: a job of one batch shows progress and an ETA too.
        bar = tqdm(total=batches * s.steps, unit="step", desc=self.layer, disable=not progress, dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 10.0)
        with bar:
            bar.set_postfix(channels=f"{before}/{len(self.channels)}")
            for i in range(0, len(self.pending), self.batch):
                chans = self.pending[i:i + self.batch]
                seeds = [image_seed(s.seed, c, k) for c in chans for k in range(K)]
                t0 = time.perf_counter()
                result = render(self.model, batch_objective(self.layer, chans, s.neurons, K, s.diversity_weight),
                                param=make_param(s.param, s.size, len(seeds)), steps=s.steps, lr=s.lr,
                                seed=seeds, device=self.device, progress=bar.update if progress else False)
                seconds = (time.perf_counter() - t0) / len(chans)
                with _interrupts_held():
                    self._write_batch(chans, seeds, result, seconds)
                _warn_dead_channels(self.layer, chans, result, K)
                done += len(chans)
                bar.set_postfix(channels=f"{before + done}/{len(self.channels)}")
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
            value = result.terms["objective"][j] if "objective" in result.terms else result.values[j]
            images[stem(c, k, K)] = {
                "channel": c, "k": k, "seed": seed, "value": float(value), "file": rel,
                "sha256": hashlib.sha256((self.out / rel).read_bytes()).hexdigest(),
                "seconds": round(seconds, 4), "run": run_index,
                **({"diversity": float(result.terms["diversity"][j])} if "diversity" in result.terms else {}),
            }
        self.layer_entry["images"] = dict(sorted(images.items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
        self._write_manifest()
        write_sheet(self.out, self.manifest, self.layer)

    def _write_manifest(self):
        text = json.dumps(self.manifest, indent=1) + "\n"
        atomic_write(self.out / MANIFEST, lambda tmp: Path(tmp).write_text(text))


def _warn_dead_channels(layer: str, chans: Sequence[int], result, K: int) -> None:
    """Channels whose every image ended at exactly 0: units that never fired (a ReLU below zero
    for every input tried), so the optimization could not move them; their images are noise."""
    values = result.terms.get("objective", result.values).view(len(chans), K)
    dead = [c for c, v in zip(chans, values) if not v.any()]
    if dead:
        warnings.warn(f"{layer}: channel(s) {', '.join(map(str, dead[:20]))}{' ...' if len(dead) > 20 else ''} ended at 0 "
                      "(the unit did not fire on its images, so it gave them no gradient and they show little "
                      "beyond the starting noise); try another --seed, more --steps, or a layer before the ReLU", RuntimeWarning, stacklevel=2)


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
            neurons: bool = False, size: int = 128, steps: int = 512, lr: Optional[float] = None,
            param: str = "fourier", diversity: int = 1, diversity_weight: Optional[float] = None,
            seed: int = 0, device: str = "auto",
            batch="auto", format: str = "png", force: bool = False, argv: Optional[Sequence[str]] = None) -> Job:
    """Check everything a render job needs and return it, without writing anything.

    Raises :class:`UsageError` (one line: the problem and the fix) for an unknown model or layer,
    a bad channel spec, channels out of range, unreadable weights, an unwritable ``out``, or a
    folder that holds renders with other settings (unless ``force``: then it starts over there).
    Channels whose images the manifest records, with the files intact, are skipped (``pending``).
    ``lr=None`` is the param's own ``default_lr`` (0.005 for ``cppn``), else 0.05; the manifest
    records the rate used.
    """
    ChannelSpec.parse(channels)  # the syntax, before anything slow
    for name, value, low in (("--size", size, 8), ("--steps", steps, 1), ("--diversity", diversity, 1)):
        if int(value) < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr {lr}: must be positive")
    diversity_weight = DIVERSITY_WEIGHT if diversity_weight is None else float(diversity_weight)
    if not diversity_weight >= 0:
        raise UsageError(f"--diversity-weight {diversity_weight}: must be 0 or more (0: no push apart; default "
                         f"{DIVERSITY_WEIGHT:g}, relative to the objective)")
    if format not in FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(FORMATS)}")
    if param not in PARAMS:
        raise UsageError(f"--param {param}: use one of {', '.join(PARAMS)}")
    probe = make_param(param, 8, 1)  # available in this build?
    if lr is None:  # the param's own rate (a CPPN's is 10x smaller), as render(lr=None) picks it
        lr = getattr(probe, "default_lr", None) or DEFAULT_LR
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
                        diversity_weight, int(seed), format, dev.type)
    new = {
        "featvis_manifest": MANIFEST_VERSION, "model": model,
        # "sha256" is a digest of the loaded tensors (which network); "file_sha256" the file's own bytes
        "weights": {"spec": weights, "sha256": weights_digest(net),
                    **(weights_file(model, _weights_arg(weights) if weights != "default" else "default") or {})},
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
    section["objective"] = objective_template(layer, neurons, settings.diversity, diversity_weight)
    section["channels"] = shape[0]
    n = auto_batch(net, layer, settings, dev) if batch == "auto" else int(batch)
    manifest["featvis"], manifest["torch"] = __version__, torch.__version__
    manifest["device"] = _device_label(dev)
    manifest["runs"] = manifest.get("runs", []) + [{
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "featvis": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": manifest["device"], "batch": n, "layer": layer, "channels": channels,
        "argv": list(argv) if argv is not None else None,
    }]
    job = Job(net, layer, chans, [], out, n, dev, settings, manifest, old is None, stale)
    job.pending = [c for c in chans if not job.complete(c)]
    return job


# --- sheets ------------------------------------------------------------------------------------

#: Automatic sheets enlarge smaller renders to cells this wide (whole-pixel steps where possible):
#: a 64 px layer then makes a sheet one can read, not 208 px wide.
SHEET_MIN_CELL = 128


def sheet_title(manifest: dict, layer: str) -> str:
    """``"inceptionv1 mixed4a: channel, fourier 128 px, 512 steps"``: what a sheet shows."""
    s = manifest.get("settings", {})
    what = "neuron" if s.get("neurons") else "channel"
    extra = f", {s['diversity']} per channel" if int(s.get("diversity", 1)) > 1 else ""
    return f"{manifest.get('model', '?')} {layer}: {what}, {s.get('param', '?')} {s.get('size', '?')} px, " \
           f"{s.get('steps', '?')} steps{extra}"


def write_sheet(out: Path, manifest: dict, layer: str, cols: Optional[int] = None, labels: bool = True,
                path=None, cell: Optional[int] = None, title: bool = True) -> Optional[Path]:
    """The contact sheet of ``layer``'s recorded images (``out/<layer>_sheet.png`` by default).

    Rows hold one channel's ``diversity`` images each when there are several per channel.
    ``cell``: the cell size in pixels (default: the render size, at least :data:`SHEET_MIN_CELL`,
    a whole multiple of it when enlarged); ``title``: the model and layer above the grid.
    Returns the path, or ``None`` when the layer has no images yet.
    """
    out = Path(out)
    entries = list(manifest["layers"][layer]["images"].items())
    if not entries:
        return None
    K = int(manifest["settings"].get("diversity", 1))
    cols = cols or (K if K > 1 else math.ceil(math.sqrt(len(entries))))
    path = Path(path) if path is not None else out / f"{layer}_sheet.png"
    if cell is None:
        size = int(manifest["settings"].get("size", SHEET_MIN_CELL))
        cell = size * math.ceil(SHEET_MIN_CELL / size) if size < SHEET_MIN_CELL else size
    sheet([out / e["file"] for _, e in entries], labels=[name for name, _ in entries] if labels else None,
          cols=cols, path=path, cell=cell, title=sheet_title(manifest, layer) if title else None)
    return path
