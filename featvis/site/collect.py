"""Reading render folders for the site: the ONE place that reads them (through
:class:`featvis.jobs.folder.RenderFolder`, their owner), and their records merged into models ->
layers -> units. Everything after works on these plain records."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UsageError

#: The folder of the site's stylesheet, script and icon (no model or layer may take its name).
STATIC = "_static"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Names the site itself uses beside model and layer folders (pages, assets, its record): a model or
#: layer whose slug would be one of them, or end like a page, gets a ``_`` appended.
_RESERVED = {"index.html", STATIC, "img", "thumb", ".featvis-site.json"}
_RESERVED_SUFFIXES = (".html", ".htm", ".json", ".jpg", ".png", ".svg", ".css", ".js")


@dataclass
class Image:
    """One visualization: ``kind`` "channel" or "neuron", ``k`` its diversity index; ``negative``:
    a minimizing image (``featvis render --negative``)."""

    channel: int
    k: int
    kind: str
    seed: Optional[int]
    value: Optional[float]
    path: Path  # absolute, inside its folder
    negative: bool = False


@dataclass
class Example:
    """One top-k dataset crop with its activation."""

    rank: int
    value: float
    image: str  # the source image, relative to the topk image folder (shown, never read)
    path: Path  # the crop, absolute, inside its folder
    source: int = 0  # which of the layer's top-k records (one per folder) it comes from


@dataclass
class Upstream:
    """One input unit of a circuit: ``channel`` of the circuit's ``source`` layer."""

    channel: int
    norm: float
    sign: str
    heatmap: Optional[Path]


@dataclass
class Circuit:
    source: str  # the upstream layer
    inputs: List[Upstream]


@dataclass
class Folder:
    """What a render folder holds, as plain records (see :func:`read_folder`)."""

    path: Path
    model: str
    weights: dict  # {"spec", "sha256"} (empty for a topk-only folder)
    settings: dict  # featvis render's settings (empty for a topk-only folder)
    versions: Dict[str, str]  # {"featvis": ..., "torch": ..., "device": ...}
    layers: Dict[str, dict]  # layer -> {"channels": int|None, "objective": str|None, "images": [Image]}
    topk: Dict[str, dict]  # layer -> {"info": {...}, "channels": {c: [Example]}}
    circuits: Dict[str, Dict[int, Circuit]]  # layer -> channel -> Circuit
    warnings: List[str] = field(default_factory=list)
    plugins: List[str] = field(default_factory=list)  # FEATVIS_PLUGINS of the latest run (its model may come from one)
    atlas: Dict[str, dict] = field(default_factory=dict)  # layer -> activation atlas (see _read_atlas)
    scores: Dict[str, dict] = field(default_factory=dict)  # layer -> featvis score's record (manifest "score")


def _read_atlas(sec: dict, file) -> Optional[dict]:
    """An ``atlas`` record (``featvis atlas --record``) as plain values, its files resolved inside
    the folder (``file(rel, what)``); None when its image is missing."""
    image = file(sec["image"], "atlas image")
    if image is None:
        return None
    cells = []
    for c in sec.get("cells") or []:
        p = file(c["file"], f"atlas cell {c['y']},{c['x']}")
        if p is not None:
            cells.append({"x": int(c["x"]), "y": int(c["y"]), "n": int(c["n"]), "weight": float(c["weight"]),
                          "units": [int(u) for u in c["units"]], "path": p})
    info = {k: sec.get(k) for k in ("grid", "size", "steps", "photos", "points", "per_image", "method", "images",
                                      "class", "class_name")}
    return {"image": image, "cells": cells, **info}


def read_folder(path) -> Folder:
    """Read a render folder through :class:`featvis.jobs.folder.RenderFolder` (its merged records:
    renders and ``topk``), plus the circuit records ``<layer>/circuits/<channel>.json``.

    Every path a record names must stay inside the folder (:class:`UsageError` otherwise).
    Recorded files that are missing are left out with a warning in ``Folder.warnings``.
    """
    from ..jobs.folder import RenderFolder
    if not Path(path).is_dir():
        raise UsageError(f"{path}: no such folder; give folders written by featvis render (or topk)")
    rf = RenderFolder(path)
    m = rf.read()
    if m is None:
        raise UsageError(f"{path} holds no featvis records (no manifest.json or parts/); "
                         "give a folder written by featvis render or featvis topk")
    root = Path(path).resolve()
    warnings: List[str] = []

    def file(rel, what: str, entry: Optional[dict] = None) -> Optional[Path]:
        """The recorded file, resolved; None (and a warning naming ``what``) when it is missing, not
        a regular file, or (``entry``: a render's record) not the bytes recorded."""
        p = rf.path(rel).resolve()
        if not p.is_file():
            warnings.append(f"{what}: {p} is missing; left out")
            return None
        if entry is not None and not rf.image_ok(entry):
            warnings.append(f"{what}: {p} is not the image recorded for it (truncated or replaced); left out: run the "
                            "featvis render command again to render it anew")
            return None
        return p

    settings = m.get("settings") or {}
    kind = "neuron" if settings.get("neurons") else "channel"
    layers: Dict[str, dict] = {}
    for name, sec in (m.get("layers") or {}).items():
        images = []
        for key, rec in (sec.get("images") or {}).items():
            p = file(rec["file"], f"{name}:{key.split('_')[0]} (image {key})", rec)
            if p is not None:
                images.append(Image(int(rec["channel"]), int(rec.get("k", 0)), kind, rec.get("seed"), rec.get("value"), p,
                                    rec.get("negative") is True))
        layers[name] = {"channels": sec.get("channels"), "objective": sec.get("objective"), "images": images}
    topk: Dict[str, dict] = {}
    model = m.get("model")
    weights = dict(m.get("weights") or {})
    renders_by = {"model": model, "weights": weights}
    from ..jobs.folder.records import made_by_differences
    for name, sec in (m.get("topk") or {}).items():
        model = model or sec.get("model") or (sec.get("made_by") or {}).get("model")
        diffs = made_by_differences(renders_by, sec.get("made_by") or {})
        if diffs:
            raise UsageError(f"{path}: the top-k examples of {name} were chosen by another network than its renders "
                             f"({'; '.join(diffs)}); run featvis topk again with the renders' model and weights")
        if not weights and isinstance(sec.get("made_by"), dict):
            weights = dict(sec["made_by"]["weights"])
        chans: Dict[int, List[Example]] = {}
        for c, recs in (sec.get("channels") or {}).items():
            for r in recs:
                p = file(r["crop"], f"topk {name}:{c}")
                if p is not None:
                    chans.setdefault(int(c), []).append(Example(int(r.get("rank", 0)), float(r["value"]),
                                                                str(r.get("image", "")), p))
        info = {k: sec.get(k) for k in ("images", "k", "size", "score")}
        if info["images"] is not None:  # the dataset folder, as the page shows it: its name, no local path
            info["images"] = Path(str(info["images"])).name or str(info["images"])
        topk[name] = {"info": info, "channels": chans}
    atlas: Dict[str, dict] = {}
    for name, sec in (m.get("atlas") or {}).items():
        model = model or sec.get("model")
        got = _read_atlas(sec, lambda rel, what, name=name: file(rel, f"{name} {what}"))
        if got is not None:
            atlas[name] = got
    circuits: Dict[str, Dict[int, Circuit]] = {}
    for (layer, c), rec in rf.read_circuits().items():  # schema-checked; a path outside the folder is refused
        diffs = made_by_differences({"model": model, "weights": weights}, rec.get("made_by") or {})
        if diffs:
            raise UsageError(f"{path}: the circuit of {layer}:{c} was computed on another network than its renders "
                             f"({'; '.join(diffs)}); record it again: featvis circuit ... --record {path}")
        inputs = []
        for u in rec["inputs"]:
            heat = file(u["heatmap"], f"circuit {layer}:{c}") if u.get("heatmap") else None
            inputs.append(Upstream(int(u["channel"]), float(u["norm"]), str(u.get("sign", "")), heat))
        circuits.setdefault(layer, {})[c] = Circuit(str(rec["from"]), inputs)
    if not model:
        raise UsageError(f"{path}: its records name no model; give a folder written by featvis render or featvis topk")
    versions = {k: str(m[k]) for k in ("featvis", "torch", "device") if m.get(k)}
    runs = [r for r in (m.get("runs") or []) if isinstance(r, dict)]
    plugins = runs[-1].get("plugins") if runs else None
    plugins = [str(p) for p in plugins] if isinstance(plugins, list) else []
    return Folder(root, str(model), weights, dict(settings), versions, layers, topk, circuits,
                  warnings, plugins, atlas, dict(m.get("score") or {}))


@dataclass
class RenderSet:
    """The images one folder holds for one layer, with how they were made."""

    folder: Folder
    given: str  # the folder as the user named it (for the reproducing command)
    kind: str
    tag: str  # sub-folder of img/ for its files
    objective: Optional[str]


@dataclass
class Unit:
    channel: int
    images: List[Tuple[RenderSet, Image]] = field(default_factory=list)
    examples: List[Example] = field(default_factory=list)
    circuit: Optional[Circuit] = None
    score: Optional[dict] = None  # {kind: {level: [mean, low, high, n]}} of featvis score, with "observer"

    @property
    def primary(self) -> Optional[Image]:
        return next((im for _, im in self.images if not im.negative), None)


@dataclass
class Layer:
    name: str
    slug: str
    channels: Optional[int] = None
    renders: List[RenderSet] = field(default_factory=list)
    topk: List[dict] = field(default_factory=list)
    units: Dict[int, Unit] = field(default_factory=dict)
    atlas: Optional[dict] = None  # the layer's activation atlas (the last folder's that has one)


@dataclass
class Model:
    name: str
    slug: str
    weights: dict
    layers: Dict[str, Layer] = field(default_factory=dict)
    folders: List[str] = field(default_factory=list)


def published_path(path: str) -> str:
    """A local path as a published page may show it: a relative one as given, an absolute one (or
    ``~/...``) by its last name only, so that no page carries the builder's folders."""
    text = str(path)
    if os.path.isabs(text) or text.startswith("~"):
        return Path(text).name or text.strip("/~") or "."
    return text


def safe_name(name: str) -> str:
    """A file-name-safe form of a name (letters, digits, ``._-``; not starting with a dot)."""
    return _SAFE.sub("_", name).strip(".") or "_"


def slug(name: str) -> str:
    """The folder of a model or layer in the site (``layer3.1`` stays ``layer3.1``); never one of
    the names the site uses itself (``index.html``, ``img``, ...: those get a ``_`` appended)."""
    s = safe_name(name)
    if s.lower() in _RESERVED or s.lower().endswith(_RESERVED_SUFFIXES):
        s += "_"
    return s


def collect(folders: Sequence[Tuple[str, Folder]], plain: Optional[Dict[str, Optional[str]]] = None) -> Dict[str, Model]:
    """Merge folders into models (by name and weights) -> layers -> units.

    Folders of one model with the same weights share its pages (e.g. one folder per layer, or
    channel and neuron renders of one layer). URLs stay stable: the first weights of a model name
    keep the plain name (``plain``: ``{model name: weights sha256}`` from the site's earlier
    builds, updated here; else the first folder's weights); other weights of that name become a
    model of their own, ``name-<sha256[:8]>``.
    """
    plain = {} if plain is None else plain
    for _, f in folders:
        plain.setdefault(f.model, f.weights.get("sha256"))
    models: Dict[str, Model] = {}
    for given, f in folders:
        given = published_path(given)
        sha = f.weights.get("sha256")
        key = f.model if sha == plain[f.model] else f"{f.model}-{(sha or 'unknown')[:8]}"
        model = models.get(key)
        if model is None:
            model = models[key] = Model(key, slug(key), f.weights)
            clash = [o.name for o in models.values() if o.slug == model.slug and o is not model]
            if clash:
                raise UsageError(f"models {clash[0]!r} and {key!r} would share the page folder {model.slug!r}; "
                                 "put one of them into a separate site")
        model.folders.append(given)
        for name in sorted(set(f.layers) | set(f.topk) | set(f.circuits) | set(f.atlas)):
            layer = model.layers.get(name)
            if layer is None:
                layer = model.layers[name] = Layer(name, slug(name))
                clash = [o.name for o in model.layers.values() if o.slug == layer.slug and o is not layer]
                if clash:
                    raise UsageError(f"layers {clash[0]!r} and {name!r} of {key} would share the page folder "
                                     f"{layer.slug!r}; render one of them into a separate site")
            sec = f.layers.get(name)
            if sec is not None:
                if sec["channels"] is not None:
                    layer.channels = max(layer.channels or 0, int(sec["channels"]))
                kind = sec["images"][0].kind if sec["images"] else ("neuron" if f.settings.get("neurons") else "channel")
                tags = {r.tag for r in layer.renders}
                tag = kind if kind not in tags else next(f"{kind}{i}" for i in range(2, 10 ** 6) if f"{kind}{i}" not in tags)
                rs = RenderSet(f, given, kind, tag, sec["objective"])
                layer.renders.append(rs)
                for im in sorted(sec["images"], key=lambda im: (im.channel, im.negative, im.k)):
                    layer.units.setdefault(im.channel, Unit(im.channel)).images.append((rs, im))
            if name in f.topk:
                layer.topk.append(f.topk[name]["info"])
                for c, exs in f.topk[name]["channels"].items():
                    for ex in exs:
                        ex.source = len(layer.topk) - 1
                    layer.units.setdefault(c, Unit(c)).examples.extend(exs)
            if name in f.atlas:
                layer.atlas = f.atlas[name]
            for c, circ in f.circuits.get(name, {}).items():
                layer.units.setdefault(c, Unit(c)).circuit = circ
            rec = f.scores.get(name)
            if rec:
                for c, kinds in rec.get("channels", {}).items():
                    unit = layer.units.setdefault(int(c), Unit(int(c)))
                    unit.score = dict(kinds, observer=str((rec.get("observer") or {}).get("model", "?")),
                                      photos=rec.get("n_photos"), k=rec.get("k"))
    for model in models.values():
        for layer in model.layers.values():
            layer.units = dict(sorted(layer.units.items()))
            for u in layer.units.values():  # channel renders first: they make the thumbnail
                u.images.sort(key=lambda p: (p[0].kind != "channel", layer.renders.index(p[0]), p[1].negative, p[1].k))
                u.examples.sort(key=lambda ex: (-ex.value, ex.source, ex.rank))
    return dict(sorted(models.items()))
