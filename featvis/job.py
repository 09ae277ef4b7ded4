"""Whole-model render jobs: every channel of many layers, in shards, into one folder.

The job behind ``featvis render MODEL LAYER [LAYER ...]`` (and ``--layers blocks|all``)::

    job = prepare_job("inceptionv1", ["mixed4a", "mixed4b"], channels="all", out="renders",
                      shard=featvis.shard.detect())
    job.run()

The work is a fixed, ordered list of batches (:func:`plan_batches`): layer by layer, ``batch``
channels at a time, all ``diversity`` images of a channel in one batch. Shard ``i`` of ``N``
renders batches ``i, i+N, ...`` (:class:`featvis.shard.Shard`). Every image is a function of
the settings and its unit only: its seed is :func:`unit_seed` ``(seed, layer, channel, k)`` and
its batch is the same whatever ``N`` is, so the files are byte for byte the same for 1 shard or N.

Each shard records its images in its own part file, ``DIR/parts/shard-I-of-N.json``, and writes
only the images of its own batches, so no two shards ever write one file. ``DIR/manifest.json``
and the sheets are derived from the parts by :func:`merge` (under a lock; safe at any time). A
single-process job merges after every batch; a shard of several merges when it finishes, so the
last shard to finish leaves the folder complete. A shard killed at any moment and re-run renders
only its own batches that are not complete (a whole batch again, so its images equal the
uninterrupted run's; recorded images are not rewritten).
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import platform
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import UsageError
from .shard import Shard

PARTS = "parts"
PART_VERSION = 1
LOCK = ".featvis.lock"
#: The part of a single-process job (no --shard, no launcher).
SINGLE = Shard()


# --- units, batches, seeds -----------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class WorkUnit:
    """One image of the job: image ``k`` of channel ``channel`` of ``layer``."""

    layer: str
    channel: int
    k: int = 0

    def name(self, diversity: int) -> str:
        """The image's name in its layer (the file stem): ``"476"``, or ``"476_2"`` with diversity."""
        return str(self.channel) if diversity == 1 else f"{self.channel}_{self.k}"

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}" + ("" if self.k == 0 else f"#{self.k}")


@dataclass(frozen=True)
class Batch:
    """Batch number ``index`` of a job: ``channels`` of ``layer``, each with ``diversity`` images."""

    index: int
    layer: str
    channels: Tuple[int, ...]
    diversity: int = 1

    @property
    def units(self) -> List[WorkUnit]:
        return [WorkUnit(self.layer, c, k) for c in self.channels for k in range(self.diversity)]


def plan_batches(layers: Sequence[Tuple[str, Sequence[int]]], batch: int, diversity: int = 1) -> List[Batch]:
    """The job's ordered batches: layer by layer (in the order given), ``batch`` channels at a time
    in channel order. The list depends only on its arguments, never on the shards."""
    out: List[Batch] = []
    for layer, chans in layers:
        chans = list(chans)
        for i in range(0, len(chans), batch):
            out.append(Batch(len(out), layer, tuple(chans[i:i + batch]), diversity))
    return out


def layer_key(layer: str) -> int:
    """A layer name as a 64-bit number for seeding (stable across runs, machines and Python versions)."""
    return int.from_bytes(hashlib.sha256(layer.encode()).digest()[:8], "big")


def unit_seed(seed: int, layer: str, channel: int, k: int = 0) -> int:
    """The seed of image ``k`` of ``layer:channel``: a different stream for every unit of the model,
    the same whatever batch, shard or job it is rendered in."""
    from .rng import derive_seed
    return derive_seed(seed, layer_key(layer), channel, k)


def spec_of(chans: Sequence[int]) -> str:
    """Channels as a compact spec that ``--channels`` reads back: ``[0,1,2,3,7]`` -> ``"0:4,7"``."""
    parts, chans = [], sorted(set(chans))
    i = 0
    while i < len(chans):
        j = i
        while j + 1 < len(chans) and chans[j + 1] == chans[j] + 1:
            j += 1
        parts.append(str(chans[i]) if i == j else f"{chans[i]}:{chans[j] + 1}")
        i = j + 1
    return ",".join(parts)


# --- the folder: part files, lock, merge ---------------------------------------------------------

def part_path(out: Path, writer: str) -> Path:
    return Path(out) / PARTS / f"{writer}.json"


def _write_json(path: Path, data: dict) -> None:
    from .io import atomic_write
    text = json.dumps(data, indent=1) + "\n"

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    atomic_write(path, write)


def read_parts(out: Path) -> Dict[str, dict]:
    """Every part file of the folder by writer name; a damaged one is a :class:`UsageError`."""
    folder = Path(out) / PARTS
    parts = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("featvis_part") != PART_VERSION:
                raise ValueError(f"no 'featvis_part': {PART_VERSION} entry")
            for key in ("writer", "model", "weights", "settings", "job", "layers", "runs"):
                data[key]  # noqa: B018 (presence check)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path} is not a featvis part file ({e}); move it out of {folder} and run the shard "
                             f"that wrote it again") from e
        parts[data["writer"]] = data
    return parts


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the folder's writer lock (``DIR/.featvis.lock``, an flock: released when the process dies)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _intact(out: Path, entry: dict) -> bool:
    from .batch import image_ok
    return image_ok(Path(out), entry)


@dataclass
class MergeReport:
    """What :func:`merge` found: units expected by the latest job, recorded, missing and failed
    (each by shard), and what it wrote."""

    out: Path
    expected: int = 0
    recorded: int = 0
    missing: Dict[str, List[str]] = field(default_factory=dict)  # shard "I/N" -> unit names
    failed: Dict[str, Dict[str, str]] = field(default_factory=dict)  # shard -> unit -> message
    layers: int = 0
    wrote: List[str] = field(default_factory=list)

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


def merge(out, sheets: bool = True, layers: Optional[Sequence[str]] = None, check: bool = True) -> MergeReport:
    """Merge the folder's part files into ``manifest.json`` and rebuild sheets older than their
    images (under the folder lock; safe at any time, also while shards run). Returns a
    :class:`MergeReport` with the units of the latest job that are missing, by shard.

    ``layers``: rebuild only these layers' sheets (``None``: any that is stale). ``check=False``
    skips the report (which reads every image to check it), for a merge after each batch.
    """
    out = Path(out)
    report = MergeReport(out)
    with folder_lock(out):
        parts = read_parts(out)
        if not parts:
            return report
        path = out / "manifest.json"
        manifest = {**_other_keys(path), **_merged(out, parts)}
        text = json.dumps(manifest, indent=1) + "\n"
        if not path.exists() or path.read_text() != text:
            _write_json(path, manifest)
            report.wrote.append("manifest.json")
        if sheets:
            from .batch import write_sheet
            for layer, section in manifest["layers"].items():
                if layers is not None and layer not in layers:
                    continue
                sheet = out / f"{layer}_sheet.png"
                files = [out / e["file"] for e in section["images"].values()]
                newest = max((p.stat().st_mtime_ns for p in files if p.exists()), default=None)
                if newest is not None and (not sheet.exists() or sheet.stat().st_mtime_ns < newest):
                    # The sheet shows what is there: a recorded image whose file was damaged is left out.
                    intact = {name: e for name, e in section["images"].items() if _intact(out, e)}
                    if intact:
                        write_sheet(out, {**manifest, "layers": {layer: {"images": intact}}}, layer)
                        report.wrote.append(sheet.name)
    if check:
        _missing(out, manifest, parts, report)
    return report


def _other_keys(path: Path) -> dict:
    """What other writers (``featvis topk``) keep in the manifest: carried over by the merge."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k not in MERGED_KEYS}


#: The manifest's keys that :func:`merge` derives from the parts.
MERGED_KEYS = ("featvis_manifest", "model", "weights", "settings", "featvis", "torch", "device", "runs", "job",
               "parts", "layers")


def _merged(out: Path, parts: Dict[str, dict]) -> dict:
    """The manifest of the folder: the union of the parts' images (runs renumbered in time order)."""
    base = parts[min(parts, key=lambda w: _latest_start(parts[w]))]
    latest = parts[max(parts, key=lambda w: _latest_start(parts[w]))]
    for writer, part in parts.items():
        for key in ("model", "weights", "settings"):
            if part[key] != base[key]:
                raise UsageError(f"{part_path(out, writer)} was rendered with other {key} than "
                                 f"{part_path(out, base['writer'])}; remove the wrong one (or render into another --out)")
    runs = sorted(((r.get("started", ""), w, i) for w, p in parts.items() for i, r in enumerate(p["runs"])))
    number = {(w, i): n for n, (_, w, i) in enumerate(runs)}
    layers: Dict[str, dict] = {}
    for writer in sorted(parts):
        part = parts[writer]
        for layer, section in part["layers"].items():
            merged = layers.setdefault(layer, {"images": {}})
            for key in ("objective", "channels"):
                if key in section:
                    merged[key] = section[key]
            for name, entry in section["images"].items():
                entry = dict(entry, run=number.get((writer, entry.get("run", 0)), 0))
                if name not in merged["images"] or not _intact(out, merged["images"][name]):
                    merged["images"][name] = entry
    for section in layers.values():
        section["images"] = dict(sorted(section["images"].items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
    last_run = latest["runs"][-1] if latest["runs"] else {}
    from .batch import MANIFEST_VERSION
    return {
        "featvis_manifest": MANIFEST_VERSION, "model": base["model"], "weights": base["weights"],
        "settings": base["settings"], "featvis": last_run.get("featvis"), "torch": last_run.get("torch"),
        "device": last_run.get("device"),
        "runs": [dict(parts[w]["runs"][i], writer=w) for _, w, i in runs],
        "job": latest["job"], "parts": sorted(parts),
        "layers": {layer: layers[layer] for layer in _layer_order(latest, layers)},
    }


def _latest_start(part: dict) -> str:
    return max((r.get("started", "") for r in part["runs"]), default="")


def _layer_order(latest: dict, layers: dict) -> List[str]:
    first = [name for name in latest["job"]["layers"] if name in layers]
    return first + [name for name in layers if name not in first]


def _missing(out: Path, manifest: dict, parts: Dict[str, dict], report: MergeReport) -> None:
    job = manifest["job"]
    K, N = int(manifest["settings"].get("diversity", 1)), int(job["shards"])
    from .batch import parse_channels
    batches = plan_batches([(layer, parse_channels(spec)) for layer, spec in job["layers"].items()], int(job["batch"]), K)
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
            if entry is not None and _intact(out, entry):
                report.recorded += 1
                continue
            report.missing.setdefault(shard, []).append(str(u))
            if str(u) in failed:
                report.failed.setdefault(shard, {})[str(u)] = failed[str(u)]


# --- the job -------------------------------------------------------------------------------------

LAYER_SETS = ("blocks", "all")


def select_layers(model, which: str, size: int, model_name: str) -> List[str]:
    """``--layers blocks``: the block outputs ``featvis layers`` marks; ``all``: every hookable
    layer whose output has channels (each module once, under its first name)."""
    from .models import layers as list_layers
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
    settings: object  # featvis.batch.Settings
    part: dict  # this shard's record (as on disk, or new)
    recorded: Dict[str, Dict[str, dict]]  # every part's images at the start: layer -> name -> entry
    run_record: dict
    stale_files: List[str] = field(default_factory=list)
    failures: Dict[str, str] = field(default_factory=dict)

    @property
    def mine(self) -> List[Batch]:
        """This shard's batches, done or not."""
        return self.shard.take(self.batches)

    def done(self, u: WorkUnit) -> bool:
        """Whether unit ``u``'s image is recorded (by any shard) with its file intact (checked once)."""
        if u not in self._done:
            name = u.name(self.settings.diversity)
            sources = (self.part["layers"].get(u.layer, {}).get("images", {}), self.recorded.get(u.layer, {}))
            self._done[u] = any(name in source and _intact(self.out, source[name]) for source in sources)
        return self._done[u]

    @property
    def pending(self) -> List[Batch]:
        """This shard's batches with an image to render."""
        return [b for b in self.mine if not all(self.done(u) for u in b.units)]

    def channels(self, done: Optional[bool] = None) -> List[Tuple[str, int]]:
        """This shard's channels (``done=True``: those with every image recorded; ``False``: the others)."""
        out = []
        for b in self.mine:
            for c in b.channels:
                if done is None or all(self.done(WorkUnit(b.layer, c, k)) for k in range(b.diversity)) == done:
                    out.append((b.layer, c))
        return out

    def run(self, progress: bool = True, step_progress: bool = False) -> int:
        """Render this shard's pending batches; returns the number of images written.

        After each batch its images and the shard's part file are written (atomically, Ctrl-C
        held back until they are); a single-process job then merges (manifest and the layer's
        sheet), a shard of several merges once at the end. A batch that fails (a non-finite
        objective, an out-of-memory error) is recorded as failed and the next one goes on.
        """
        from tqdm.auto import tqdm

        from .batch import _interrupts_held, batch_objective, make_param
        from .render import render
        s, K = self.settings, self.settings.diversity
        todo = self.pending
        self._start()
        units = [u for b in self.mine for u in b.units]
        written = 0
        bar = tqdm(total=len(units), initial=sum(map(self.done, units)), unit="img",
                   desc=self.layers[0][0] if len(self.layers) == 1 else f"shard {self.shard}",
                   disable=not progress, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0)
        with bar:
            for b in todo:
                seeds = [unit_seed(s.seed, u.layer, u.channel, u.k) for u in b.units]
                done_before = [self.done(u) for u in b.units]
                t0 = time.perf_counter()
                try:
                    result = render(self.model, batch_objective(b.layer, list(b.channels), s.neurons, K, s.diversity_weight),
                                    param=make_param(s.param, s.size, len(seeds)), steps=s.steps, lr=s.lr,
                                    seed=seeds, device=self.device, progress=step_progress)
                except (KeyboardInterrupt, UsageError):
                    raise
                except Exception as e:  # this batch's units fail; the job goes on
                    with _interrupts_held():
                        self._record_failure(b, e)
                    bar.update(sum(not d for d in done_before))
                    continue
                seconds = (time.perf_counter() - t0) / len(b.channels)
                with _interrupts_held():
                    written += self._write_batch(b, seeds, result, seconds)
                bar.update(sum(not d for d in done_before))
                bar.set_postfix(layer=b.layer, refresh=False)
        if self.shard.count > 1 or self.failures:
            self.report = merge(self.out)  # every shard as it ends: the last one to end leaves the folder complete
        return written

    def _start(self):
        """Create the folder (starting over with ``force``) and record this run in the part."""
        self.out.mkdir(parents=True, exist_ok=True)
        root = self.out.resolve()
        for rel in self.stale_files:  # --force: what the old records list, never anything outside --out
            path = (self.out / rel)
            if path.resolve().is_relative_to(root) and path.is_file() and not path.is_symlink():
                path.unlink()
        self.part["runs"].append(self.run_record)
        self._write_part()

    def _record_failure(self, b: Batch, error: BaseException):
        from .batch import _short
        message = f"{type(error).__name__}: {_short(error)}"
        for u in b.units:
            self.part.setdefault("failed", {})[str(u)] = message
            self.failures[str(u)] = message
        self._write_part()

    def _write_batch(self, b: Batch, seeds, result, seconds) -> int:
        from .io import save_image
        s, K = self.settings, self.settings.diversity
        section = self.part["layers"].setdefault(b.layer, {"images": {}})
        section.update(self.section_info[b.layer])
        images, run = section["images"], len(self.part["runs"]) - 1
        written = 0
        for j, (u, seed) in enumerate(zip(b.units, seeds)):
            if self.done(u):  # recorded by another run or shard: never rewrite its file
                continue
            rel = f"{b.layer}/{u.name(K)}.{s.format}"
            save_image(result.images[j], self.out / rel)
            images[u.name(K)] = {
                "channel": u.channel, "k": u.k, "seed": seed, "value": float(result.values[j]), "file": rel,
                "sha256": hashlib.sha256((self.out / rel).read_bytes()).hexdigest(),
                "seconds": round(seconds, 4), "run": run,
            }
            self.part.get("failed", {}).pop(str(u), None)
            self._done[u] = True
            written += 1
        section["images"] = dict(sorted(images.items(), key=lambda kv: (kv[1]["channel"], kv[1]["k"])))
        self._write_part()
        if self.shard.count == 1:
            merge(self.out, layers=[b.layer], check=False)
        return written

    def _write_part(self):
        _write_json(part_path(self.out, self.shard.writer), self.part)

    section_info: Dict[str, dict] = field(default_factory=dict)  # layer -> objective and channel count
    report: Optional[MergeReport] = None  # the merge at the end of :meth:`run`, if one ran
    _done: Dict[WorkUnit, bool] = field(default_factory=dict, repr=False)


def _device_label(device) -> str:
    from .batch import _device_label as label
    return label(device)


def prepare_job(model: str, layers: Sequence[str] = (), channels: str = "all", out="renders",
                weights: str = "default", layer_set: Optional[str] = None, neurons: bool = False,
                size: int = 128, steps: int = 512, lr: float = 0.05, param: str = "fourier", diversity: int = 1,
                seed: int = 0, device: str = "auto", batch="auto", format: str = "png", force: bool = False,
                shard: Shard = SINGLE, argv: Optional[Sequence[str]] = None) -> ShardJob:
    """Check everything a (shard of a) whole-model job needs and return it, writing nothing.

    ``layers``: layer names, or ``layer_set`` ``"blocks"``/``"all"``; ``channels`` applies to
    each layer. Raises :class:`UsageError` (one line: the problem and the fix) for an unknown
    model or layer, a bad channel spec, channels out of range, unreadable weights, an unwritable
    ``out``, or a folder that holds renders with other settings (unless ``force``).
    """
    import torch

    from . import __version__
    from .batch import (DIVERSITY_WEIGHT, FORMATS, PARAMS, SPEC_HELP, Settings, _differences, auto_batch,
                        check_out_dir, make_param, objective_template, open_model, parse_channels, probe_layer,
                        resolve_device, weights_digest)
    parse_channels(channels)  # the syntax, before anything slow
    if layers and layer_set:
        raise UsageError(f"name layers ({' '.join(layers)}) or give --layers {layer_set}, not both")
    if not layers and not layer_set:
        raise UsageError("no layer given: name one or more layers after the model, or pass --layers blocks|all "
                         "(see: featvis layers MODEL)")
    if len(set(layers)) != len(layers):
        raise UsageError(f"a layer is named twice in {' '.join(layers)}; name each once")
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
    if force and shard.count > 1:
        raise UsageError(f"--force with shard {shard} of {shard.count}: one shard starting over would delete the "
                         "others' work; start over once without shards (or remove the folder), then run the shards")
    out = Path(out)
    check_out_dir(out)
    parts = {} if force else read_parts(out)
    dev = resolve_device(device)
    net = open_model(model, weights, dev, seed)
    names = list(layers) or select_layers(net, layer_set, size, model)
    chosen: List[Tuple[str, List[int]]] = []
    info = {}
    settings = Settings(neurons, int(size), int(steps), float(lr), param, int(diversity), DIVERSITY_WEIGHT,
                        int(seed), format, dev.type)
    for layer in names:
        shape = probe_layer(net, layer, size, dev)
        if neurons and len(shape) != 3:
            raise UsageError(f"--neurons needs a spatial layer, but {layer!r} gives shape {shape}; drop --neurons or pick conv layers")
        chans = parse_channels(channels, shape[0], f"{layer} of {model}")
        if not chans:
            raise UsageError(f"--channels {channels} selects no channel; expected {SPEC_HELP}")
        chosen.append((layer, chans))
        info[layer] = {"objective": objective_template(layer, neurons, settings.diversity, DIVERSITY_WEIGHT),
                       "channels": shape[0]}
    if batch == "auto":
        if shard.count > 1 and dev.type == "cuda":
            raise UsageError(f"--batch auto with shard {shard}: every shard must cut the job into the same batches, "
                             "and free GPU memory differs between processes; give --batch N (featvis plan suggests one)")
        n = min(auto_batch(net, layer, settings, dev) for layer, _ in chosen)
    else:
        n = int(batch)
    new = {"model": model, "weights": {"spec": weights, "sha256": weights_digest(net)}, "settings": asdict(settings)}
    stale: List[str] = []
    if parts:
        other = next(iter(parts.values()))
        diffs = _differences(other, new)
        if diffs:
            raise UsageError(f"{out} holds renders made with other settings ({'; '.join(diffs)}); "
                             "repeat those settings to resume, choose another --out, or pass --force to start over there")
    elif force:
        for part in _readable_parts(out).values():
            stale += [e["file"] for sec in part.get("layers", {}).values() for e in sec.get("images", {}).values()]
            stale.append(str(part_path(Path("."), part["writer"])))
        stale += [f"{name}_sheet.png" for name in _old_layers(out)] + ["manifest.json"]
    else:
        _refuse_legacy(out)
    part = parts.get(shard.writer) or dict(featvis_part=PART_VERSION, writer=shard.writer, **new, job={}, layers={},
                                           runs=[])
    part["job"] = {"layers": {layer: spec_of(chans) for layer, chans in chosen}, "batch": n, "shards": shard.count}
    recorded: Dict[str, Dict[str, dict]] = {}
    for p in parts.values():
        for layer, section in p["layers"].items():
            recorded.setdefault(layer, {}).update(section["images"])
    run_record = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="microseconds"),
        "featvis": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": _device_label(dev), "batch": n, "layers": dict(part["job"]["layers"]),
        "channels": channels, "shard": str(shard), "launcher": shard.source, "host": socket.gethostname(),
        "pid": os.getpid(), "argv": list(argv) if argv is not None else None,
    }
    return ShardJob(net, chosen, plan_batches(chosen, n, settings.diversity), shard, out, n, dev, settings, part,
                    recorded, run_record, stale, section_info=info)


def _readable_parts(out: Path) -> Dict[str, dict]:
    try:
        return read_parts(out)
    except UsageError:
        return {}


def _old_layers(out: Path) -> List[str]:
    try:
        data = json.loads((out / "manifest.json").read_text())
        return [str(name) for name in data.get("layers", {})]
    except (OSError, ValueError, AttributeError):
        return []


def _refuse_legacy(out: Path) -> None:
    """A folder with a manifest that records images but no part files was written by an older
    featvis (before shards); its seeds differ, so it cannot be resumed."""
    try:
        data = json.loads((out / "manifest.json").read_text())
        legacy = any(sec.get("images") for sec in data.get("layers", {}).values())
    except (OSError, ValueError, AttributeError):
        return
    if legacy:
        raise UsageError(f"{out} holds renders of an older featvis (no {out / PARTS}/); choose another --out, "
                         "or pass --force to start over there")


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


def _shards_arg(text):
    import argparse
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of shards, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of shards, got {n}")
    return n


def add_render_arguments(p) -> None:
    """``featvis render``'s options for whole models and shards."""
    p.epilog = (p.epilog or "") + RENDER_EPILOG
    p.add_argument("--layers", choices=LAYER_SETS, metavar="blocks|all",
                   help="instead of naming layers: every block output (as featvis layers marks) or every layer")
    p.add_argument("--shard", metavar="I/N", help="render shard I (from 0) of N; default: from torchrun, SLURM or "
                   "Kubernetes, else the whole job")
    p.add_argument("--shards", type=_shards_arg, metavar="N",
                   help="the number of shards where the launcher does not say (a Kubernetes Indexed Job)")
    p.add_argument("--slurm", metavar="K=V,...",
                   help="submit the job as a SLURM array with submitit (pip install featvis[slurm]): e.g. "
                        "partition=gpu,gpus=1,array=16,time=240; cluster=local runs the array here")


def render_command(args, argv: Optional[Sequence[str]] = None) -> int:
    """``featvis render``: check, then render this process's shard (or submit the array with ``--slurm``)."""
    from .shard import detect, device_for
    if args.slurm is not None:
        from .launch import submit_array
        return submit_array(args, list(argv or []))
    shard = detect(args.shard, count=args.shards)
    job = prepare_job(args.model, list(args.layer), args.channels, args.out, weights=args.weights,
                      layer_set=args.layers, neurons=args.neurons, size=args.size, steps=args.steps, lr=args.lr,
                      param=args.param, diversity=args.diversity, seed=args.seed,
                      device=device_for(shard, args.device), batch=args.batch, format=args.format,
                      force=args.force, shard=shard, argv=argv)
    names = [layer for layer, _ in job.layers]
    what = names[0] if len(names) == 1 else f"{len(names)} layers"
    who = "" if shard.count == 1 else f"shard {shard} ({shard.source}): "
    total, todo = len(job.channels()), len(job.channels(done=False))
    pending = job.pending
    if not pending:
        print(f"{who}nothing to do: all {total} channels of {what} are in {job.out / 'manifest.json'}")
        _report(merge(job.out), shard, quiet=shard.count == 1)
        return 0
    if todo < total:
        print(f"{who}resuming: {total - todo} of {total} channels are done; rendering {todo}", file=sys.stderr)
    print(f"{who}{args.model} {what}: {todo} channels in {len(pending)} batches on {job.device.type}, "
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
    if not (out / PARTS).is_dir():
        raise UsageError(f"{out} has no {PARTS}/ folder of shard records; give a folder written by featvis render")
    report = merge(out, sheets=args.sheets)
    for line in report.lines():
        print(line)
    if not report.complete:
        shards = sorted(report.missing, key=_shard_order)
        print(f"missing units in shard{'s' * (len(shards) > 1)} {', '.join(shards)}: run the same featvis render "
              f"command with --shard {shards[0]} (and so on), then featvis merge {out} again", file=sys.stderr)
        return INCOMPLETE
    return 0
