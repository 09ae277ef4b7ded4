"""Whole-model render jobs: every channel of many layers, in shards, into one folder.

The job behind ``featvis render MODEL LAYER [LAYER ...]`` (and ``--layers blocks|all``)::

    job = prepare_job("inceptionv1", ["mixed4a", "mixed4b"], channels="all", out="renders",
                      shard=featvis.jobs.shard.detect())
    job.run()

The work is a fixed, ordered list of batches (:func:`featvis.units.plan_batches`): layer by layer,
``batch`` channels at a time, all ``diversity`` images of a channel in one batch. Shard ``i`` of
``N`` renders batches ``i, i+N, ...`` (:class:`featvis.jobs.shard.Shard`). Every image is a function of
the settings and its unit only: its seed is :func:`unit_seed` ``(seed, layer, channel, k)`` and its
batch is the same whatever ``N`` is, so the files are byte for byte the same for 1 shard or N.

The folder is a :class:`featvis.jobs.folder.RenderFolder`: each shard is a writer of its own
(``parts/shard-I-of-N.json``; a single process is ``main``) and writes only the images of its own
batches, so no two shards ever write one file. ``manifest.json`` and the sheets are derived from
the parts under the folder lock; a single-process job rebuilds its layer's sheet after every
batch, a shard of several once it ends, so the last shard to end leaves the folder complete.
:func:`merge` (``featvis merge DIR``) does the same at any time and reports which units of the
job are still missing, by shard. A shard killed at any moment and re-run renders only its own
batches that are not complete (the whole batch again, so that its images equal the uninterrupted
run's; images already recorded are not rewritten).
"""
from __future__ import annotations

import datetime
import os
import platform
import signal
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UsageError, count_arg
from ..units import spec_of
from .batches import Batch, WorkUnit, plan_batches  # noqa: F401  (WorkUnit: for callers)
from .shard import Shard

#: The shard of a single-process job (no --shard, no launcher): the folder's ``main`` writer.
SINGLE = Shard()


def layer_key(layer: str) -> int:
    """A layer name as a 64-bit number for seeding (stable across runs, machines and Python versions)."""
    import hashlib
    return int.from_bytes(hashlib.sha256(layer.encode()).digest()[:8], "big")


def unit_seed(seed: int, layer: str, channel: int, k: int = 0, negative: bool = False) -> int:
    """The seed of image ``k`` of ``layer:channel``: a stream of its own for every unit of the
    model, the same whatever batch, shard or job renders it. A minimizing image (``negative``)
    has a stream of its own too (one more part in the derivation; the maximizing ones' are as before)."""
    from ..rng import derive_seed
    if negative:
        return derive_seed(seed, layer_key(layer), channel, k, 1)
    return derive_seed(seed, layer_key(layer), channel, k)


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


# --- what the folder holds of a job -------------------------------------------------------------

@dataclass
class MergeReport:
    """The units of the folder's latest job (the ``job`` of the part that ran last): how many are
    expected and recorded, which are missing and which failed, by shard (``"I/N"``)."""

    out: Path
    expected: int = 0
    recorded: int = 0
    missing: Dict[str, List[str]] = field(default_factory=dict)  # shard -> unit names
    failed: Dict[str, Dict[str, str]] = field(default_factory=dict)  # shard -> unit -> message
    layers: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing

    def lines(self, limit: int = 8) -> List[str]:
        head = f"{self.out}: {self.recorded} of {self.expected} images of {self.layers} layer(s) are recorded"
        out = [head + (" (complete)" if self.complete else "")]
        for shard, units in sorted(self.missing.items(), key=lambda kv: _shard_order(kv[0])):
            shown = ", ".join(units[:limit]) + (f", ... ({len(units) - limit} more)" if len(units) > limit else "")
            out.append(f"  shard {shard}: {len(units)} missing: {shown}")
            for unit, message in list(self.failed.get(shard, {}).items())[:limit]:
                out.append(f"    {unit} failed: {message}")
        return out


def _shard_order(text: str) -> Tuple[int, int]:
    i, n = text.split("/")
    return int(n), int(i)


def merge(out, sheets: bool = True) -> MergeReport:
    """Merge the folder's parts into ``manifest.json`` and rebuild stale sheets (under the folder
    lock: safe at any time, also while shards run), then report what is missing (:func:`status`)."""
    from .folder import RenderFolder
    folder = RenderFolder(out)
    folder.merge(sheets=None if sheets else [])
    return status(out)


def status(out) -> MergeReport:
    """What the folder's latest job still misses, by shard; reads only (every image is checked
    against its recorded SHA-256)."""
    from ..units import parse_channels
    from .folder import RenderFolder
    folder = RenderFolder(out)
    report = MergeReport(Path(out))
    parts = folder.read_parts()
    jobs = [p for p in parts.values() if isinstance(p.get("job"), dict) and p["job"].get("layers")]
    manifest = folder.read() or {"layers": {}}
    if not jobs:  # records of a plain job (or of topk) only: what is there is the job
        for section in manifest["layers"].values():
            report.layers += 1
            report.expected += len(section["images"])
            report.recorded += sum(map(folder.image_ok, section["images"].values()))
        return report
    job = max(jobs, key=lambda p: max((r.get("started", "") for r in p.get("runs", [])), default=""))["job"]
    K, N = int((manifest.get("settings") or {}).get("diversity", 1)), int(job["shards"])
    batches = plan_batches([(layer, parse_channels(spec)) for layer, spec in job["layers"].items()], int(job["batch"]), K,
                           negative=job.get("negative") is True)
    failed = {}
    for part in parts.values():
        failed.update(part.get("failed", {}))
    report.layers = len(job["layers"])
    for b in batches:
        images = manifest["layers"].get(b.layer, {}).get("images", {})
        shard = f"{b.index % N}/{N}"
        for u in b.units:
            report.expected += 1
            entry = images.get(u.name(K))
            if entry is not None and folder.image_ok(entry):
                report.recorded += 1
                continue
            report.missing.setdefault(shard, []).append(str(u))
            if str(u) in failed:
                report.failed.setdefault(shard, {})[str(u)] = failed[str(u)]
    return report


# --- the job -------------------------------------------------------------------------------------

def _warn_dead_channels(layer: str, chans: Sequence[int], result, K: int) -> None:
    """Channels whose every image ended at exactly 0: units that never fired (a ReLU below zero
    for every input tried), so the optimization could not move them; their images are noise."""
    values = result.terms.get("objective", result.values).view(len(chans), K)
    dead = [c for c, v in zip(chans, values) if not v.any()]
    if dead:
        warnings.warn(f"{layer}: channel(s) {', '.join(map(str, dead[:20]))}{' ...' if len(dead) > 20 else ''} ended at 0 "
                      "(the unit did not fire on its images, so it gave them no gradient and they show little "
                      "beyond the starting noise); try another --seed, more --steps, or a layer before the ReLU", RuntimeWarning, stacklevel=2)


#: A value within this of 0 or 1 counts as pinned (one 8-bit level; as featvis.metrics.saturation).
PINNED_EPS = 1 / 255
#: An image with at least this share of its values pinned at 0 or 1 has collapsed to a few flat
#: colours (a diverged optimization: ``--lr 1e30`` gives 8 colours): it is recorded as a failure,
#: never as a render. Measured (toy and handcoded, 32 px, 8 and 64 steps): lr 0.05 pins at most
#: 0.3% of values, lr 1 (20x the default) at most 92% with 100+ colours left, lr 1000 and above 99.7%+
#: with at most 18 colours.
SATURATED = 0.99


def saturated(images) -> list:
    """The share of each image's values (B, C, H, W) pinned at 0 or 1."""
    x = images.detach().float()
    pinned = (x <= PINNED_EPS) | (x >= 1 - PINNED_EPS)
    return pinned.reshape(len(x), -1).float().mean(1).tolist()


LAYER_SETS = ("blocks", "all")


def select_layers(model, which: str, size: int, model_name: str) -> List[str]:
    """``--layers blocks``: the block outputs ``featvis layers`` marks; ``all``: every hookable
    layer whose output has channels (each module once, under its first name)."""
    from ..models import layers as list_layers
    if which not in LAYER_SETS:
        raise UsageError(f"--layers {which}: use blocks or all, or name the layers after the model")
    try:
        table = list_layers(model, size)
    except RuntimeError as e:
        raise UsageError(f"cannot run {model_name} at --size {size} ({str(e).splitlines()[0][:200]}); "
                         "try a larger --size") from e
    if which == "blocks":
        chosen = [li.name for li in table if li.block and li.channels]
        if not chosen:
            raise UsageError(f"{model_name} marks no block outputs (see: featvis layers {model_name}); "
                             "name the layers to render, or use --layers all")
        return chosen
    return [li.name for li in table if li.channels]


@dataclass
class ShardJob:
    """This process's share of a whole-model job (see :func:`prepare_job`); :meth:`run` renders it."""

    model: object  # the FeatvisModel
    layers: List[Tuple[str, List[int]]]
    batches: List[Batch]  # the whole job's, in order
    shard: Shard
    out: Path
    batch: int
    device: object  # torch.device
    settings: object  # featvis.jobs.settings.Settings
    header: dict  # model, weights, settings, versions: what the records must agree on
    job: dict  # {"layers": {layer: spec}, "batch": n, "shards": N}: recorded, for merge's report
    run_record: dict
    section_info: Dict[str, dict] = field(default_factory=dict)  # layer -> objective and channel count
    recorded: Dict[str, Dict[str, dict]] = field(default_factory=dict)  # every writer's images: layer -> name -> entry
    force: bool = False
    graph: object = False  # render(graph=...): capture each step in a CUDA graph (changes no pixel)
    failures: Dict[str, str] = field(default_factory=dict)
    report: Optional[MergeReport] = None  # the merge at the end of :meth:`run`, if one ran
    _done: Dict[WorkUnit, bool] = field(default_factory=dict, repr=False)

    @property
    def folder(self):
        from .folder import RenderFolder
        return RenderFolder(self.out)

    @property
    def mine(self) -> List[Batch]:
        """This shard's batches, done or not."""
        return self.shard.take(self.batches)

    def done(self, u: WorkUnit) -> bool:
        """Whether unit ``u``'s image is recorded (by any writer) with its file intact (checked once)."""
        if u not in self._done:
            entry = self.recorded.get(u.layer, {}).get(u.name(self.settings.diversity))
            self._done[u] = entry is not None and self.folder.image_ok(entry)
        return self._done[u]

    @property
    def pending(self) -> List[Batch]:
        """This shard's batches with an image to render."""
        return [b for b in self.mine if not all(self.done(u) for u in b.units)]

    def channels(self, done: Optional[bool] = None) -> List[Tuple[str, int]]:
        """This shard's channels (``done=True``: those with every image recorded, the negative ones
        too with ``--negative``; ``False``: the others)."""
        complete: Dict[Tuple[str, int], bool] = {}
        for b in self.mine:
            for c in b.channels:
                ok = all(self.done(u) for u in b.units if u.channel == c)
                complete[(b.layer, c)] = complete.get((b.layer, c), True) and ok
        return [u for u, ok in complete.items() if done is None or ok == done]

    def _read(self, folder) -> None:
        manifest = folder.read() or {}
        self.recorded = {layer: dict(sec.get("images", {})) for layer, sec in manifest.get("layers", {}).items()}
        self._done.clear()

    def run(self, progress: bool = True, step_progress: bool = False) -> int:
        """Render this shard's pending batches; returns the number of images written.

        Holds this shard's writer lock throughout (the same shard started twice: the second
        waits, then is refused naming the first) and re-reads the records under it. After each
        batch its images and the shard's part are written (atomically, Ctrl-C held back until
        they are), then ``manifest.json`` (and, in a single-process job, the layer's sheet). A
        shard of several merges the sheets as it ends. A batch that fails (a non-finite
        objective, out of memory) is recorded as failed and the job goes on. ``progress``: one bar
        on stderr over the steps of all pending batches, with the images done beside it
        (``step_progress`` is accepted for compatibility: the one bar already counts steps).
        """
        from ..progress import bar as progress_bar
        from ..render import render
        from .settings import batch_objective, recipe
        s, K = self.settings, self.settings.diversity
        folder = self.folder
        written = 0
        with folder.lock(self.shard.writer):
            if folder.claim(self.header, force=self.force):
                self.recorded = {}
            self.force = False  # a second run() resumes
            self._read(folder)
            todo = self.pending
            folder.part["job"] = self.job
            run = folder.add_run(self.run_record)
            units = [u for b in self.mine for u in b.units]
            images_done = sum(map(self.done, units))
            # One bar over the steps of every pending batch, so that a job of one batch shows progress
            # and an ETA too; the images done so far beside it.
            bar = progress_bar(total=len(todo) * s.steps, unit="step",
                       desc=self.layers[0][0] if len(self.layers) == 1 else f"shard {self.shard}",
                       disable=not progress, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0)
            with bar:
                bar.set_postfix(images=f"{images_done}/{len(units)}")
                for i, b in enumerate(todo):
                    seeds = [unit_seed(s.seed, u.layer, u.channel, u.k, u.negative) for u in b.units]
                    new = [not self.done(u) for u in b.units]
                    t0 = time.perf_counter()
                    try:
                        result = render(self.model, batch_objective(b.layer, list(b.channels), s.neurons, K,
                                                                    s.diversity_weight, b.negative),
                                        **recipe(s, len(seeds), getattr(self.model, "in_channels", 3)), seed=seeds, device=self.device, progress=bar.update if progress else False,
                                        deterministic=s.deterministic, graph=self.graph)
                    except (KeyboardInterrupt, UsageError):
                        raise
                    except Exception as e:  # this batch's units fail; the job goes on
                        with _interrupts_held():
                            self._record_failure(folder, b, e)
                        bar.update((i + 1) * s.steps - bar.n)
                        continue
                    seconds = (time.perf_counter() - t0) / len(b.channels)
                    with _interrupts_held():
                        written += self._write_batch(folder, b, seeds, new, result, seconds, run)
                    if not b.negative:  # a minimizing image ending at 0 is a success
                        _warn_dead_channels(b.layer, list(b.channels), result, K)
                    images_done += sum(new)
                    bar.set_postfix(images=f"{images_done}/{len(units)}", layer=b.layer, refresh=False)
        if self.shard.count > 1 or self.failures:
            self.report = merge(self.out)  # every shard as it ends: the last one to end leaves the folder complete
        return written

    def _record_failure(self, folder, b: Batch, error: BaseException):
        from ..errors import one_line
        message = f"{type(error).__name__}: {one_line(error)}"
        for u in b.units:
            self.failures[str(u)] = message
        if not any(sec.get("images") for sec in folder.part.get("layers", {}).values()):
            return  # nothing rendered yet: a record would claim the folder for settings that fail
        folder.part.setdefault("failed", {}).update({str(u): message for u in b.units})
        folder.record_images(b.layer, {}, section=self.section_info[b.layer], sheet=False)

    def _write_batch(self, folder, b: Batch, seeds, new, result, seconds, run) -> int:
        K, fmt = self.settings.diversity, self.settings.format
        entries = {}
        failed = folder.part.get("failed", {})
        shares = saturated(result.images)
        collapsed = {}
        for j, (u, seed) in enumerate(zip(b.units, seeds)):
            if not new[j]:  # recorded by another run or shard: its file is never rewritten
                continue
            if shares[j] >= SATURATED:  # a diverged optimization: flat colours, not a visualization
                collapsed[str(u)] = (f"the image collapsed to flat colours ({100 * shares[j]:.1f}% of its values at 0 "
                                     f"or 1: the optimization diverged); lower --lr (now {self.settings.lr:g}; "
                                     "with --force or another --out)")
                continue
            rel = folder.image_rel(b.layer, u.name(K), fmt)
            # "value": the objective alone; with --diversity K the diversity term is recorded apart.
            # A minimizing image's is the unit's value (the objective's negation), as the others'.
            value = result.terms["objective"][j] if "objective" in result.terms else result.values[j]
            entries[u.name(K)] = {
                "channel": u.channel, "k": u.k, "seed": seed, "value": -float(value) if u.negative else float(value),
                "file": rel, "sha256": folder.save_image(rel, result.images[j]), "seconds": round(seconds, 4), "run": run,
                **({"diversity": float(result.terms["diversity"][j])} if "diversity" in result.terms else {}),
                **({"negative": True} if u.negative else {}),
            }
            failed.pop(str(u), None)
            self._done[u] = True
        self.failures.update(collapsed)
        if collapsed and not entries and not any(sec.get("images") for sec in folder.part.get("layers", {}).values()):
            return 0  # nothing rendered yet: a record would claim the folder for settings that fail
        folder.part.setdefault("failed", {}).update(collapsed)
        manifest = folder.record_images(b.layer, entries, section=self.section_info[b.layer],
                                        sheet=self.shard.count == 1)
        self.recorded = {layer: sec.get("images", {}) for layer, sec in manifest.get("layers", {}).items()}
        return len(entries)


def prepare_job(model: str, layers: Sequence[str] = (), channels: str = "all", out="renders",
                weights: str = "default", layer_set: Optional[str] = None, neurons: bool = False,
                size: Optional[int] = None, steps: int = 512, lr: Optional[float] = None,
                param: Optional[str] = None, preset: Optional[str] = None, diversity: int = 1, diversity_weight: Optional[float] = None, seed: int = 0,
                negative: bool = False,
                deterministic: bool = True, graph=False, device: str = "auto", batch="auto", format: str = "png", force: bool = False,
                shard: Shard = SINGLE, argv: Optional[Sequence[str]] = None, threads: Optional[int] = None) -> ShardJob:
    """Check everything a (shard of a) whole-model job needs and return it, writing nothing.

    ``layers``: layer names, or ``layer_set`` ``"blocks"``/``"all"``; ``channels`` applies to
    each layer. Raises :class:`UsageError` (one line: the problem and the fix) for an unknown
    model or layer, a bad channel spec, channels out of range, unreadable weights, an unwritable
    ``out``, or a folder that holds renders with other settings (unless ``force``). ``preset``
    (:mod:`featvis.presets`) chooses the param, transforms and learning-rate schedule, and the
    defaults of ``size`` and ``lr``; without it ``param=None`` is ``fourier`` and ``size=None``
    128. ``lr=None`` is the preset's, else the param's own ``default_lr`` (0.005 for ``cppn``), else 0.05; ``diversity_weight=None`` is
    :data:`featvis.jobs.settings.DIVERSITY_WEIGHT` (relative to the objective); the manifest records both.
    ``deterministic`` and ``graph`` are :func:`featvis.render`'s (``deterministic`` is a setting: it
    can change pixels on a GPU; ``graph`` is not: it changes only how a step is launched).
    ``threads``: torch's CPU threads (:func:`featvis.threads.choose`: ``None`` is ``$FEATVIS_THREADS``,
    else the folder's count when resuming, else the idle cores); set here, and on the CPU recorded as
    a setting, because there it changes pixels.
    """
    import math

    import torch

    from .. import __version__
    from ..models.listing import probe_layer
    from ..models.open import open_model, weights_arg
    from ..models.registry import pick_device
    from ..models.weights import weights_digest, weights_file
    from ..render import DEFAULT_LR
    from ..units import SPEC_HELP, ChannelSpec, parse_channels
    from .folder import RenderFolder, header_differences
    from .settings import (DIVERSITY_WEIGHT, FORMATS, MAX_SEED, MAX_SIZE, PARAMS, Settings, auto_batch, device_label, recipe,
                           make_param, objective_template)
    ChannelSpec.parse(channels)  # the syntax, before anything slow
    asked = preset
    if preset == "auto":  # per model; a folder that holds renders resumes with the preset it recorded
        from ..presets import auto
        recorded = None if force else (RenderFolder(out).read() or {}).get("settings")
        preset = recorded.get("preset") if recorded is not None else auto(model)
        if recorded is not None:  # what it was made with, unless given
            param = recorded.get("param") if preset is None and param is None else param
            size = recorded.get("size") if size is None else size
            lr = recorded.get("lr") if lr is None else lr
    if preset is not None:
        from ..presets import PRESETS
        if preset not in PRESETS:
            raise UsageError(f"--preset {preset}: use one of {', '.join(PRESETS)} (see featvis.presets)")
        if param is not None:
            raise UsageError(f"--preset {preset} chooses its own image param ({PRESETS[preset].param_name}); "
                             f"drop --param {param}, or drop --preset")
        size = PRESETS[preset].size if size is None else size
        lr = PRESETS[preset].lr if lr is None else lr
        param = PRESETS[preset].param_name
    else:
        size = 128 if size is None else size
        param = "fourier" if param is None else param
    from ..models.open import check_model_name
    check_model_name(model)  # before "no layer given": a forgotten model name reads as one
    if layers and layer_set:
        raise UsageError(f"name layers ({' '.join(layers)}) or give --layers {layer_set}, not both")
    if not layers and not layer_set:
        raise UsageError("no layer given: name one or more layers after the model, or pass --layers blocks|all "
                         "(see: featvis layers MODEL)")
    if len(set(layers)) != len(layers):
        raise UsageError(f"a layer is named twice in {' '.join(layers)}; name each once")
    for name, value, low, high in (("--size", size, 8, MAX_SIZE), ("--steps", steps, 1, None),
                                   ("--diversity", diversity, 1, 1024), ("--seed", seed, 0, MAX_SEED)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{name} {value!r}: expected a whole number")
        if value < low or (high is not None and value > high):
            raise UsageError(f"{name} {value}: must be at least {low}" + (f" and at most {high}" if high else ""))
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr {lr}: must be a positive finite number, e.g. 0.05")
    diversity_weight = DIVERSITY_WEIGHT if diversity_weight is None else float(diversity_weight)
    if not (isinstance(diversity_weight, (int, float)) and math.isfinite(diversity_weight) and diversity_weight >= 0):
        raise UsageError(f"--diversity-weight {diversity_weight}: must be 0 or more (0: no push apart; default "
                         f"{DIVERSITY_WEIGHT:g}, relative to the objective)")
    if format not in FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(FORMATS)}")
    if preset is None and param not in PARAMS:
        raise UsageError(f"--param {param}: use one of {', '.join(PARAMS)}")
    probe = make_param(param, 8, 1) if preset is None else None  # available in this build?
    if lr is None:  # the param's own rate (a CPPN's is 10x smaller), as render(lr=None) picks it
        lr = getattr(probe, "default_lr", None) or DEFAULT_LR
    if batch != "auto" and int(batch) < 1:
        raise UsageError(f"--batch {batch}: must be a positive number of channels, or auto")
    if force and shard.count > 1:
        raise UsageError(f"--force with shard {shard}: one shard starting over would delete the others' work; "
                         "start over once without shards (or remove the folder), then run the shards")
    out = Path(out)
    folder = RenderFolder(out)
    folder.check_writable()
    old = None if force else folder.read()
    dev = pick_device(device)
    cpu_threads = _threads(threads, old, dev, shard, out)
    net = open_model(model, weights, dev, seed)
    names = list(layers) or select_layers(net, layer_set, size, model)
    folder.check_writable(names)
    settings = Settings(neurons, int(size), int(steps), float(lr), param, int(diversity), float(diversity_weight),
                        int(seed), format, dev.type, bool(deterministic), preset, cpu_threads,
                        PRESETS[preset].recorded_revision() if preset is not None else None)
    if getattr(net, "in_channels", 3) not in (1, 3):
        raise UsageError(f"{model} takes {net.in_channels}-channel images, and a render folder holds PNGs of 1 (gray) or "
                         "3 (RGB) channels; render it from Python (featvis.render returns every channel)")
    if getattr(net, "in_channels", 3) != 3:  # a param for the model's input channels (else a one-line error, before any work)
        recipe(settings, 1, net.in_channels)
    chosen: List[Tuple[str, List[int]]] = []
    info = {}
    for layer in names:
        shape = probe_layer(net, layer, size, dev)
        if neurons and len(shape) != 3:
            raise UsageError(f"--neurons needs a spatial layer, but {layer!r} gives shape {shape}; drop --neurons "
                             "or pick conv layers")
        chans = parse_channels(channels, shape[0], f"{layer} of {model}")
        if not chans:
            raise UsageError(f"--channels {channels} selects no channel; expected {SPEC_HELP}")
        chosen.append((layer, chans))
        info[layer] = {"objective": objective_template(layer, neurons, settings.diversity, settings.diversity_weight),
                       "channels": shape[0]}
        if negative:
            info[layer]["negative_objective"] = objective_template(layer, neurons, settings.diversity,
                                                                   settings.diversity_weight, negative=True)
    if batch == "auto":
        if shard.count > 1 and dev.type == "cuda":
            raise UsageError(f"--batch auto with shard {shard}: every shard must cut the job into the same batches, "
                             "and free GPU memory differs between processes; give --batch N (featvis plan suggests one)")
        n = min(auto_batch(net, layer, settings, dev, len(chans)) for layer, chans in chosen)
    else:
        n = int(batch)
    # "sha256" is a digest of the loaded tensors (which network); "file_sha256" the file's own bytes
    file_info = weights_file(model, weights_arg(weights) if weights != "default" else "default") or {}
    header = {"model": model, "weights": {"spec": weights, "sha256": weights_digest(net), **file_info},
              "settings": asdict(settings), "featvis": __version__, "torch": torch.__version__,
              "device": device_label(dev)}
    if old is not None and old.get("settings") is not None and any(sec.get("images") for sec in old["layers"].values()):
        # (a claim without images is compared under the lock, by claim(): its writer may be gone)
        diffs = header_differences(old, header)
        if diffs:
            raise UsageError(f"{out} holds renders made with other settings ({'; '.join(diffs)}); "
                             "repeat those settings to resume, choose another --out, or pass --force to start over there")
    job = {"layers": {layer: spec_of(chans) for layer, chans in chosen}, "batch": n, "shards": shard.count,
           **({"negative": True} if negative else {})}
    run_record = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="microseconds"),
        "featvis": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": header["device"], "batch": n, "layer": ",".join(names), "channels": channels,
        "shard": str(shard), "launcher": shard.source, "host": socket.gethostname(), "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        # the plugin modules that registered models when this ran (a site's reproduce command names them)
        "plugins": [m.strip() for m in os.environ.get("FEATVIS_PLUGINS", "").split(",") if m.strip()],
        "argv": list(argv) if argv is not None else None,
        **({"preset": f"auto -> {preset}"} if asked == "auto" else {}),
    }
    recorded = {} if old is None else {layer: dict(sec.get("images", {})) for layer, sec in old.get("layers", {}).items()}
    return ShardJob(net, chosen, plan_batches(chosen, n, settings.diversity, bool(negative)), shard, out, n, dev, settings, header,
                    job, run_record, info, recorded, force, graph)


def _threads(threads: Optional[int], old: Optional[dict], dev, shard: Shard, out) -> Optional[int]:
    """Set torch's CPU threads for the job; returns the ``threads`` setting to record (the count on
    the CPU, ``None`` on CUDA or when resuming a CPU folder written before the count was recorded).

    A resumed CPU job takes the folder's count unless the user chose one (``--threads``,
    ``FEATVIS_THREADS``): then another count is refused, since its images would differ from those
    already there. Shards choose without looking at the load, so that shards started at different
    moments choose alike."""
    from ..threads import apply, choose, explicit_choice
    settings = (old or {}).get("settings") or {}
    on_cpu = dev.type == "cpu"
    recorded = settings.get("threads") if on_cpu and settings.get("device") == "cpu" else None
    legacy = on_cpu and settings.get("device") == "cpu" and "threads" not in settings
    if legacy:  # "cpu (x86_64, 2 threads)": the count those images were made with
        import re
        found = re.search(r"(\d+) threads\)$", str((old or {}).get("device", "")))
        recorded = int(found.group(1)) if found else None
    chosen = explicit_choice(threads)
    if on_cpu and recorded is not None and chosen is not None and chosen != recorded:
        raise UsageError(f"{out} holds images rendered with {recorded} CPU thread(s), and on the CPU the thread count "
                         f"changes the pixels; drop --threads/FEATVIS_THREADS to resume with {recorded} (the folder's), "
                         "choose another --out, or pass --force to start over there")
    n, source = choose(threads, recorded, load_aware=shard.count == 1)
    from ..threads import available_cpus
    if source == "the folder's" and n > available_cpus():
        warnings.warn(f"{out} was rendered with {n} CPU threads, more than the {available_cpus()} CPUs here: resuming "
                      "with as many (the images depend on the count) will be slow; --force starts over with fewer",
                      RuntimeWarning, stacklevel=2)
    apply(n)
    return n if on_cpu and not legacy else None


def prepare(model: str, layer: str, channels: str = "all", out="renders", **options) -> ShardJob:
    """A render job of one layer: :func:`prepare_job` with ``[layer]`` (same options, same checks,
    nothing written until :meth:`ShardJob.run`)::

        job = prepare("toy", "conv2", channels="0:8", out="renders", steps=64)
        job.run()
    """
    return prepare_job(model, [layer], channels, out, **options)


# --- the command line: featvis render (many layers, shards) and featvis merge ----------------------

RENDER_EPILOG = """
whole models and shards:
  featvis render MODEL L1 L2 ...         several layers into one folder, one sheet each
  featvis render MODEL --layers blocks   the block outputs featvis layers marks (or: all)
  --shard I/N renders every N-th batch from batch I; without it the shard comes from torchrun
  (RANK/WORLD_SIZE), a SLURM array or srun, or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX
  with --shards N). Each shard keeps its own DIR/parts/shard-I-of-N.json; featvis merge DIR
  (run by every shard as it finishes) makes DIR/manifest.json and the sheets, and lists what is
  missing. Images do not depend on N: same seed, same files.

  torchrun --standalone --nproc-per-node 8 -m featvis render inceptionv1 --layers blocks --batch 64 --out microscope
  featvis render inceptionv1 --layers blocks --batch 64 --out microscope --slurm partition=gpu,gpus=1,array=16
"""


def add_render_arguments(p) -> None:
    """``featvis render``'s options for whole models and shards."""
    p.epilog = (p.epilog or "") + RENDER_EPILOG
    p.add_argument("--negative", action="store_true",
                   help="also render each channel's minimizing images: <c>_neg.png (<c>_neg_<k>.png with --diversity), "
                        "after the maximizing ones; a folder rendered without it resumes with it")
    p.add_argument("--layers", choices=LAYER_SETS, metavar="blocks|all",
                   help="instead of naming layers: every block output (as featvis layers marks) or every layer")
    p.add_argument("--shard", metavar="I/N", help="render shard I (from 0) of N; default: from torchrun, SLURM or "
                   "Kubernetes, else the whole job")
    p.add_argument("--shards", type=count_arg("shards"), metavar="N",
                   help="the number of shards where the launcher does not say (a Kubernetes Indexed Job)")
    p.add_argument("--slurm", metavar="K=V,...",
                   help="submit the job as a SLURM array with submitit (pip install featvis[slurm]): e.g. "
                        "partition=gpu,gpus=1,array=16,time=240; cluster=local runs the array here")


#: ``--preset none``: the plain recipe (a Fourier image, the standard transforms, constant Adam).
NO_PRESET = "none"


def cli_preset(preset: Optional[str], param: Optional[str]) -> Optional[str]:
    """The preset a command line asks for: ``auto`` (the best measured channel recipe for the model,
    :func:`featvis.presets.auto`) when ``--preset`` is not given, unless ``--param`` chooses the image
    (then the plain recipe with it); ``none`` is the plain recipe."""
    if preset is None:
        return None if param is not None else "auto"
    return None if preset == NO_PRESET else preset


def render_command(args, argv: Optional[Sequence[str]] = None) -> int:
    """``featvis render``: check, then render this process's shard (``--slurm``: see :mod:`featvis.jobs.launch`)."""
    from .shard import detect, device_for
    shard = detect(args.shard, count=args.shards)
    if shard.local_rank is not None and device_for(shard, args.device) != args.device:
        import torch
        torch.cuda.set_device(shard.local_rank)  # so that nothing lands on cuda:0 by default
    job = prepare_job(args.model, list(args.layer), args.channels, args.out, weights=args.weights,
                      layer_set=args.layers, neurons=args.neurons, size=args.size, steps=args.steps, lr=args.lr,
                      param=args.param, preset=cli_preset(args.preset, args.param), diversity=args.diversity,
                      diversity_weight=args.diversity_weight, seed=args.seed, negative=args.negative,
                      deterministic=args.deterministic, graph=args.graph,
                      device=device_for(shard, args.device), batch=args.batch, format=args.format,
                      force=args.force, shard=shard, argv=argv, threads=args.threads)
    names = [layer for layer, _ in job.layers]
    what = names[0] if len(names) == 1 else f"{len(names)} layers"
    who = "" if shard.count == 1 else f"shard {shard} ({shard.source}): "
    total, todo = len(job.channels()), len(job.channels(done=False))
    pending = job.pending
    if not pending:
        job.folder.refresh()  # a manifest or sheet that a kill left behind the records is rebuilt
        print(f"{who}nothing to do: all {total} channels of {what} are in {job.out / 'manifest.json'}")
        _report(status(job.out), shard, quiet=shard.count == 1)
        return 0
    if todo < total:
        print(f"{who}resuming: {total - todo} of {total} channels are done; rendering {todo}", file=sys.stderr)
    print(f"{who}{args.model} {what}: {todo} channels in {len(pending)} batch{'es' * (len(pending) != 1)} on {job.device.type}, "
          f"{job.batch} per batch -> {job.out}/", file=sys.stderr)
    try:
        job.run(progress=True, step_progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        done = len(job.channels(done=True))
        print(f"interrupted: {done} of {total} channels are written to {job.out}; "
              "run the same command again to finish", file=sys.stderr)
        return 130
    if job.failures:
        first = next(iter(job.failures.items()))
        print(f"{who}{len(job.failures)} images failed (first: {first[0]}: {first[1]}); the others are written to "
              f"{job.out}/; run the same command again to retry them", file=sys.stderr)
        return 1
    sheets = ", ".join(str(job.out / f"{name}_sheet.png") for name in names[:3]) + (", ..." if len(names) > 3 else "")
    print(f"{who}rendered {todo} channels of {what} ({total} in all) to {job.out}/; sheet{'s' * (len(names) > 1)}: {sheets}")
    if job.report is not None:
        _report(job.report, shard)
    return 0


def _report(report: MergeReport, shard: Shard, quiet: bool = False) -> None:
    if quiet and report.complete:
        return
    if report.complete:
        print(f"all shards are done: {report.recorded} images in {report.out}/manifest.json")
    else:
        others = sum(len(v) for v in report.missing.values())
        print(f"{others} images of other shards are not recorded yet; when they are done, "
              f"run: featvis merge {report.out}", file=sys.stderr)


def add_merge_arguments(p) -> None:
    p.add_argument("dir", metavar="DIR", help="a folder written by featvis render (with shards or without)")
    p.add_argument("--no-sheets", dest="sheets", action="store_false", help="only the manifest, no sheets")
    p.epilog = ("Writes DIR/manifest.json from DIR/parts/*.json and rebuilds sheets older than their images; safe\n"
                "while shards run. Exit status: 0 every unit of the job is recorded, 3 some are missing (listed by\n"
                "shard: re-run those shards), 2 a usage error.")


#: ``featvis merge``'s exit status when units of the job are missing.
INCOMPLETE = 3


def merge_command(args) -> int:
    """``featvis merge DIR``: 0 complete, :data:`INCOMPLETE` with the missing units listed by shard."""
    out = Path(args.dir)
    if not out.is_dir():
        raise UsageError(f"{out}: no such folder; give a folder written by featvis render")
    from .folder import RenderFolder
    if not RenderFolder(out).exists():
        raise UsageError(f"{out} holds no featvis records (no manifest.json, no parts/); give a folder written by "
                         "featvis render")
    report = merge(out, sheets=args.sheets)
    for line in report.lines():
        print(line)
    if not report.complete:
        shards = sorted(report.missing, key=_shard_order)
        if shards == ["0/1"]:
            print(f"missing units: run the same featvis render command again, then featvis merge {out}", file=sys.stderr)
        else:
            print(f"missing units in shard{'s' * (len(shards) > 1)} {', '.join(shards)}: run the same featvis render "
                  f"command with --shard {shards[0]} (and so on), then featvis merge {out} again", file=sys.stderr)
        return INCOMPLETE
    return 0
