"""An atlas of a model: ``featvis site`` turns render folders into a static, linkable website.

OpenAI Microscope showed a page per unit of a few models; this builds that site for *your* render
folders (``featvis render``, ``featvis topk``, circuits), as plain HTML + CSS + a little JavaScript
that works from ``file://`` and from any static host (no server code, no external fonts, scripts
or CDNs)::

    SITE/index.html                    models -> layers: channels, how many rendered, settings, versions
    SITE/<model>/index.html            the model's layers in detail
    SITE/<model>/<layer>/index.html    a grid of every unit (lazy thumbnails), sort by channel or value, filter
    SITE/<model>/<layer>/<c>.html      one unit: its images, seeds, values, the reproducing command,
                                       dataset examples, upstream units (circuits), prev/next (arrow keys)
    SITE/<model>/<layer>/img/, thumb/  copied (or ``link``ed) images and generated thumbnails
    SITE/_static/site.css, site.js     the only stylesheet and script
    SITE/.featvis-site.json            what the last run wrote, from which sources (to update only changes)

The unit URLs (``<model>/<layer>/<channel>.html``) are stable: a re-run with more channels, more
layers or more folders keeps every old link working. Re-running rewrites only pages whose text
changed and copies or thumbnails only images whose source changed; files a previous run wrote that
are no longer part of the site are removed (nothing else in ``SITE`` is touched, nothing outside it
ever is).

>>> build(["renders/mixed4a", "renders/mixed4b"], "atlas")      # then open atlas/index.html
>>> serve("atlas", port=8000)                                   # http://127.0.0.1:8000/

The site never imports torch: it reads files.
"""
from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import __version__
from .errors import UsageError

#: Longest side of a layer grid thumbnail, in pixels (cells are ~120 CSS px: sharp at 1.3x zoom).
THUMB = 160
#: The record of what a run wrote, inside SITE.
STATE = ".featvis-site.json"
STATE_VERSION = 1
STATIC = "_static"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ==================================================================================================
# Reading a render folder: the ONE place that reads one (through featvis.folder, its owner);
# everything below works on the plain records it returns.
# ==================================================================================================

@dataclass
class Image:
    """One visualization: ``kind`` "channel" or "neuron", ``k`` its diversity index."""

    channel: int
    k: int
    kind: str
    seed: Optional[int]
    value: Optional[float]
    path: Path  # absolute, inside its folder


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


def read_folder(path) -> Folder:
    """Read a render folder through :class:`featvis.folder.RenderFolder` (its merged records:
    renders and ``topk``), plus the circuit records ``<layer>/circuits/<channel>.json``.

    Every path a record names must stay inside the folder (:class:`UsageError` otherwise).
    Recorded files that are missing are left out with a warning in ``Folder.warnings``.
    """
    from .folder import RenderFolder
    if not Path(path).is_dir():
        raise UsageError(f"{path}: no such folder; give folders written by featvis render (or topk)")
    rf = RenderFolder(path)
    m = rf.read()
    if m is None:
        raise UsageError(f"{path} holds no featvis records (no manifest.json or parts/); "
                         "give a folder written by featvis render or featvis topk")
    root = Path(path).resolve()
    warnings: List[str] = []

    def file(rel, what: str) -> Optional[Path]:
        """The recorded file, resolved; None (and a warning) when it is missing."""
        p = rf.path(rel).resolve()
        if p.is_file():
            return p
        warnings.append(f"{what}: {p} is missing; left out")
        return None

    settings = m.get("settings") or {}
    kind = "neuron" if settings.get("neurons") else "channel"
    layers: Dict[str, dict] = {}
    for name, sec in (m.get("layers") or {}).items():
        images = []
        for key, rec in (sec.get("images") or {}).items():
            p = file(rec["file"], f"{name} image {key}")
            if p is not None:
                images.append(Image(int(rec["channel"]), int(rec.get("k", 0)), kind, rec.get("seed"), rec.get("value"), p))
        layers[name] = {"channels": sec.get("channels"), "objective": sec.get("objective"), "images": images}
    topk: Dict[str, dict] = {}
    model = m.get("model")
    for name, sec in (m.get("topk") or {}).items():
        model = model or sec.get("model")
        chans: Dict[int, List[Example]] = {}
        for c, recs in (sec.get("channels") or {}).items():
            for r in recs:
                p = file(r["crop"], f"topk {name}:{c}")
                if p is not None:
                    chans.setdefault(int(c), []).append(Example(int(r.get("rank", 0)), float(r["value"]),
                                                                str(r.get("image", "")), p))
        topk[name] = {"info": {k: sec.get(k) for k in ("images", "k", "size", "score")}, "channels": chans}
    circuits: Dict[str, Dict[int, Circuit]] = {}
    for f in sorted(root.glob("*/circuits/*.json")):
        if not f.stem.isdigit():
            continue
        layer = f.parent.parent.name
        try:
            rec = json.loads(f.read_text())
            inputs = []
            for u in rec["inputs"]:
                heat = file(u["heatmap"], f"circuit {layer}:{f.stem}") if u.get("heatmap") else None
                inputs.append(Upstream(int(u["channel"]), float(u["norm"]), str(u.get("sign", "")), heat))
            circuits.setdefault(layer, {})[int(f.stem)] = Circuit(str(rec["from"]), inputs)
        except UsageError:  # a path outside the folder is refused, not skipped
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.append(f"{f} is not a circuit record ({type(e).__name__}: {e}); left out")
    if not model:
        raise UsageError(f"{path}: its records name no model; give a folder written by featvis render or featvis topk")
    versions = {k: str(m[k]) for k in ("featvis", "torch", "device") if m.get(k)}
    return Folder(root, str(model), dict(m.get("weights") or {}), dict(settings), versions, layers, topk, circuits,
                  warnings)


# ==================================================================================================
# The atlas: folders merged into models -> layers -> units
# ==================================================================================================

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

    @property
    def primary(self) -> Optional[Image]:
        return self.images[0][1] if self.images else None


@dataclass
class Layer:
    name: str
    slug: str
    channels: Optional[int] = None
    renders: List[RenderSet] = field(default_factory=list)
    topk: List[dict] = field(default_factory=list)
    units: Dict[int, Unit] = field(default_factory=dict)


@dataclass
class Model:
    name: str
    slug: str
    weights: dict
    layers: Dict[str, Layer] = field(default_factory=dict)
    folders: List[str] = field(default_factory=list)


def slug(name: str) -> str:
    """A file-name-safe form of a model or layer name (``layer3.1`` stays ``layer3.1``)."""
    s = _SAFE.sub("_", name).strip(".")
    return s or "_"


def collect(folders: Sequence[Tuple[str, Folder]]) -> Dict[str, Model]:
    """Merge folders into models (by name and weights) -> layers -> units.

    Folders of one model with the same weights share its pages (e.g. one folder per layer, or
    channel and neuron renders of one layer); the same model name with other weights becomes a
    model of its own, ``name-<sha256[:8]>``.
    """
    shas: Dict[str, set] = {}
    for _, f in folders:
        shas.setdefault(f.model, set()).add(f.weights.get("sha256"))
    models: Dict[str, Model] = {}
    for given, f in folders:
        sha = f.weights.get("sha256")
        key = f.model if len(shas[f.model]) == 1 else f"{f.model}-{(sha or 'unknown')[:8]}"
        model = models.get(key)
        if model is None:
            model = models[key] = Model(key, slug(key), f.weights)
            if model.slug == STATIC:
                model.slug = "model" + STATIC
            clash = [o.name for o in models.values() if o.slug == model.slug and o is not model]
            if clash:
                raise UsageError(f"models {clash[0]!r} and {key!r} would share the page folder {model.slug!r}; "
                                 "put one of them into a separate site")
        model.folders.append(given)
        for name in sorted(set(f.layers) | set(f.topk) | set(f.circuits)):
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
                for im in sorted(sec["images"], key=lambda im: (im.channel, im.k)):
                    layer.units.setdefault(im.channel, Unit(im.channel)).images.append((rs, im))
            if name in f.topk:
                layer.topk.append(f.topk[name]["info"])
                for c, exs in f.topk[name]["channels"].items():
                    for ex in exs:
                        ex.source = len(layer.topk) - 1
                    layer.units.setdefault(c, Unit(c)).examples.extend(exs)
            for c, circ in f.circuits.get(name, {}).items():
                layer.units.setdefault(c, Unit(c)).circuit = circ
    for model in models.values():
        for layer in model.layers.values():
            layer.units = dict(sorted(layer.units.items()))
            for u in layer.units.values():  # channel renders first: they make the thumbnail
                u.images.sort(key=lambda p: (p[0].kind != "channel", layer.renders.index(p[0]), p[1].k))
                u.examples.sort(key=lambda ex: (-ex.value, ex.source, ex.rank))
    return dict(sorted(models.items()))


# ==================================================================================================
# Writing the site: a plan of files, then only the changes
# ==================================================================================================

def _replace(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` next to ``path``, then rename: a reader never sees half a file. Not fsynced
    (featvis.io.atomic_write is; for thousands of derived files that costs ~10x the build): the
    record of the run, written last, is, and a file that does not match its record is redone."""
    import tempfile
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".site-tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _Writer:
    """Writes files under ``out`` only when they changed, and remembers what it wrote."""

    def __init__(self, out: Path, link: bool):
        self.out, self.link = out, link
        self.old = self._load_state()
        self.files: Dict[str, dict] = {}
        if not (out / STATE).exists():  # claim the folder first: a run killed early can be re-run
            self._save(self.old)
        self.counts = {"written": 0, "unchanged": 0, "removed": 0}

    def _load_state(self) -> Dict[str, dict]:
        try:
            data = json.loads((self.out / STATE).read_text())
            if data.get("featvis_site") == STATE_VERSION:
                return dict(data.get("files") or {})
        except (OSError, ValueError, AttributeError):
            pass
        return {}

    def _dest(self, rel: str) -> Path:
        assert not os.path.isabs(rel) and ".." not in Path(rel).parts, rel  # our own names: always inside SITE
        return self.out / rel

    @staticmethod
    def _stat(p: Path) -> list:
        st = os.lstat(p)
        return [st.st_size, st.st_mtime_ns]

    def _fresh(self, rel: str, source: list) -> bool:
        old, dest = self.old.get(rel), self.out / rel
        try:
            return old is not None and old.get("source") == source and old.get("dest") == self._stat(dest)
        except OSError:
            return False

    def _done(self, rel: str, source, wrote: bool, **extra):
        self.files[rel] = dict(source=source, dest=self._stat(self.out / rel), **extra)
        self.counts["written" if wrote else "unchanged"] += 1

    def text(self, rel: str, content: str) -> None:
        """A page or static file: written when its bytes differ from what is there."""
        data = content.encode()
        dest = self._dest(rel)
        try:
            same = dest.is_file() and not dest.is_symlink() and dest.read_bytes() == data
        except OSError:
            same = False
        if not same:
            _replace(dest, lambda tmp: Path(tmp).write_bytes(data))
        self._done(rel, None, not same)

    def image(self, rel: str, src: Path) -> None:
        """A copy of ``src`` (a relative symlink to it with ``link``), redone when ``src`` changed."""
        st = os.stat(src)
        source = [str(src), st.st_size, st.st_mtime_ns, "link" if self.link else "copy"]
        if self._fresh(rel, source):
            return self._done(rel, source, False)
        dest = self._dest(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if self.link:
            os.symlink(os.path.relpath(src, dest.parent), dest)
        else:
            _replace(dest, lambda tmp: shutil.copyfile(src, tmp))
        self._done(rel, source, True)

    def thumbnail(self, rel: str, src: Path, size: int) -> Tuple[int, int]:
        """A JPEG at most ``size`` px on its longer side, made once per version of ``src``; its (w, h)."""
        st = os.stat(src)
        source = [str(src), st.st_size, st.st_mtime_ns, f"thumb{size}"]
        if self._fresh(rel, source) and "wh" in self.old[rel]:
            wh = tuple(self.old[rel]["wh"])
            self._done(rel, source, False, wh=list(wh))
            return wh
        from PIL import Image as PILImage
        with PILImage.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size), PILImage.LANCZOS)
        dest = self._dest(rel)
        if dest.is_symlink():
            dest.unlink()
        _replace(dest, lambda tmp: im.save(tmp, format="JPEG", quality=88))
        self._done(rel, source, True, wh=list(im.size))
        return im.size

    def finish(self) -> None:
        """Remove what an earlier run wrote that is no longer part of the site; save the record."""
        for rel in sorted(set(self.old) - set(self.files)):
            dest = self.out / rel
            home = dest.parent.resolve()
            if (dest.is_file() or dest.is_symlink()) and (home == self.out or self.out in home.parents):
                dest.unlink()
                self.counts["removed"] += 1
                parent = dest.parent
                while parent != self.out and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
        self._save(self.files)

    def _save(self, files: Dict[str, dict]) -> None:
        from .io import atomic_write
        text = json.dumps({"featvis_site": STATE_VERSION, "featvis": __version__, "files": files}, indent=0)
        atomic_write(self.out / STATE, lambda tmp: Path(tmp).write_text(text + "\n"))


@dataclass
class Summary:
    """What :func:`build` did."""

    out: Path
    models: int
    layers: int
    units: int
    written: int
    unchanged: int
    removed: int
    warnings: List[str]

    def __str__(self):
        return (f"{self.models} model(s), {self.layers} layer(s), {self.units} unit page(s): "
                f"{self.written} file(s) written, {self.unchanged} unchanged, {self.removed} removed -> "
                f"{self.out / 'index.html'}")


def _check_out(out: Path, folders: Sequence[Folder]) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: it is a file, not a folder; choose another --out")
    if (out / "manifest.json").exists():
        raise UsageError(f"--out {out} is a render folder (it has a manifest.json); write the site to another folder")
    resolved = out.resolve()
    for f in folders:
        if resolved == f.path or f.path in resolved.parents:
            raise UsageError(f"--out {out} is inside the render folder {f.path}; write the site to a folder of its own")
    if out.exists() and any(out.iterdir()) and not (out / STATE).exists():
        raise UsageError(f"--out {out} is a folder that featvis site did not write (no {STATE}); "
                         "choose a new or empty folder, so that nothing of yours is overwritten")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create it ({e.strerror}); choose a folder you can write to") from e
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {out}: cannot write there; choose a folder you can write to")


def build(dirs: Sequence, out="site", link: bool = False, thumb: int = THUMB, progress: bool = False,
          warn: Optional[Callable[[str], None]] = None) -> Summary:
    """Build (or update) the site for render folders ``dirs`` in ``out``; see the module docstring.

    ``link``: symlink images instead of copying them (the site then needs the render folders
    where they are). ``thumb``: longest side of the grid thumbnails. ``warn``: called with each
    warning (missing files); by default they go to stderr.
    """
    if not dirs:
        raise UsageError("featvis site needs at least one render folder (featvis site DIR [DIR ...] --out SITE)")
    if thumb < 16:
        raise UsageError(f"--thumb {thumb}: must be at least 16 px")
    warn = warn or (lambda msg: print(f"featvis site: warning: {msg}", file=sys.stderr))
    folders = [(str(d), read_folder(d)) for d in dirs]
    seen: Dict[Path, str] = {}
    for given, f in folders:
        if f.path in seen:
            raise UsageError(f"{given} and {seen[f.path]} are the same folder; give each render folder once")
        seen[f.path] = given
    out = Path(out)
    _check_out(out, [f for _, f in folders])
    out = out.resolve()
    models = collect(folders)
    warnings = [w for _, f in folders for w in f.warnings]
    for w in warnings:
        warn(w)
    for tmp in out.rglob(".*.site-tmp"):  # left by a killed run (only ours carry this suffix)
        tmp.unlink()
    writer = _Writer(out, link)
    writer.text(f"{STATIC}/site.css", CSS)
    writer.text(f"{STATIC}/site.js", JS)
    writer.text(f"{STATIC}/favicon.svg", FAVICON)
    n_units = sum(len(la.units) for mo in models.values() for la in mo.layers.values())
    from tqdm.auto import tqdm
    with tqdm(total=n_units, unit="unit", desc="featvis site", disable=not progress, leave=False) as bar:
        for model in models.values():
            for layer in model.layers.values():
                _write_layer(writer, models, model, layer, thumb, bar)
            writer.text(f"{model.slug}/index.html", _model_page(model))
    writer.text("index.html", _index_page(models))
    writer.finish()
    c = writer.counts
    return Summary(out, len(models), sum(len(m.layers) for m in models.values()), n_units, c["written"],
                   c["unchanged"], c["removed"], warnings)


# --- assets of a layer ---------------------------------------------------------------------------

def _asset_name(rs_tag: str, folder: Path, layer: str, path: Path) -> str:
    """Where a folder's file goes under ``<layer>/img/``: its path below ``DIR/<layer>/``."""
    base = folder / layer
    rel = path.relative_to(base).as_posix() if base in path.parents else "_/" + path.relative_to(folder).as_posix()
    return f"img/{rs_tag}/" + "/".join(slug(part) for part in rel.split("/"))  # safe in a URL as it is


def _write_layer(writer: _Writer, models: Dict[str, Model], model: Model, layer: Layer, thumb: int, bar) -> None:
    base = f"{model.slug}/{layer.slug}"
    src_of: Dict[int, Dict[str, str]] = {}  # channel -> {id(obj): site-relative asset path from the layer folder}
    thumbs: Dict[int, Tuple[str, Tuple[int, int]]] = {}
    for c, unit in layer.units.items():
        names = src_of[c] = {}
        for rs, im in unit.images:
            names[id(im)] = _asset_name(rs.tag, rs.folder.path, layer.name, im.path)
            writer.image(f"{base}/{names[id(im)]}", im.path)
        for ex in unit.examples:
            names[id(ex)] = f"img/topk{ex.source or ''}/" + "/".join(slug(p) for p in _tail(ex.path, "topk").split("/"))
            writer.image(f"{base}/{names[id(ex)]}", ex.path)
        if unit.circuit:
            for u in unit.circuit.inputs:
                if u.heatmap is not None:
                    names[id(u)] = "img/circuits/" + slug(u.heatmap.name)
                    writer.image(f"{base}/{names[id(u)]}", u.heatmap)
        first = unit.primary.path if unit.primary else (unit.examples[0].path if unit.examples else None)
        if first is not None:
            thumbs[c] = (f"thumb/{c}.jpg", writer.thumbnail(f"{base}/thumb/{c}.jpg", first, thumb))
    chans = list(layer.units)
    for i, (c, unit) in enumerate(layer.units.items()):
        prev_c = chans[i - 1] if i > 0 else None
        next_c = chans[i + 1] if i + 1 < len(chans) else None
        writer.text(f"{base}/{c}.html", _unit_page(models, model, layer, unit, src_of[c], prev_c, next_c))
        bar.update(1)
    writer.text(f"{base}/index.html", _layer_page(model, layer, thumbs))


def _tail(path: Path, marker: str) -> str:
    """The part of ``path`` after its last ``marker`` folder (``.../topk/476/0.png`` -> ``476/0.png``)."""
    parts = path.parts
    idx = max(i for i, p in enumerate(parts) if p == marker) if marker in parts else len(parts) - 1
    return "/".join(parts[idx + 1:]) or path.name


# ==================================================================================================
# Pages
# ==================================================================================================

e = functools.partial(html.escape, quote=True)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _page(title: str, depth: int, body: str, crumbs: Sequence[Tuple[str, Optional[str]]] = (),
          head: str = "", main_class: str = "") -> str:
    up = "../" * depth
    nav = ""
    if crumbs:
        items = "".join(f'<li><a href="{e(href)}">{e(text)}</a></li>' if href else f'<li aria-current="page">{e(text)}</li>'
                        for text, href in crumbs)
        nav = f'<nav aria-label="breadcrumb"><ol class="crumbs">{items}</ol></nav>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="featvis {e(__version__)}">
<title>{e(title)}</title>
<link rel="icon" href="{up}{STATIC}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{up}{STATIC}/site.css">
{head}<script src="{up}{STATIC}/site.js" defer></script>
</head>
<body>
<header>{nav}</header>
<main class="{main_class}">
{body}
</main>
<footer>Made with featvis {e(__version__)} (<code>featvis site</code>)</footer>
</body>
</html>
"""


def _settings_line(s: dict) -> str:
    if not s:
        return "–"
    keys = [("size", "px"), ("steps", " steps"), ("lr", " lr"), ("param", ""), ("seed", "")]
    bits = [f"{s[k]}{unit}" if k != "seed" else f"seed {s[k]}" for k, unit in keys if k in s]
    if s.get("diversity", 1) > 1:
        bits.append(f"diversity {s['diversity']}")
    if s.get("neurons"):
        bits.append("neurons")
    if s.get("device"):
        bits.append(str(s["device"]))
    return ", ".join(bits)


def _index_page(models: Dict[str, Model]) -> str:
    rows = []
    for m in models.values():
        for i, la in enumerate(m.layers.values()):
            rendered = sum(1 for u in la.units.values() if u.images)
            total = la.channels
            pct = f" ({100 * rendered / total:.0f}%)" if total else ""
            settings = "<br>".join(e(_settings_line(rs.folder.settings)) for rs in la.renders) or "–"
            versions = ", ".join(sorted({rs.folder.versions.get("featvis", "?") for rs in la.renders})) or "–"
            model_cell = (f'<th scope="rowgroup" rowspan="{len(m.layers)}"><a href="{e(m.slug)}/index.html">{e(m.name)}</a>'
                          f'<br><small>{e(_weights_label(m.weights))}</small></th>') if i == 0 else ""
            rows.append(f'<tr>{model_cell}<td><a href="{e(m.slug)}/{e(la.slug)}/index.html">{e(la.name)}</a></td>'
                        f'<td class="num">{_fmt(total)}</td><td class="num">{rendered}{pct}</td>'
                        f'<td class="num">{sum(1 for u in la.units.values() if u.examples)}</td>'
                        f'<td class="num">{sum(1 for u in la.units.values() if u.circuit)}</td>'
                        f'<td>{settings}</td><td>{e(versions)}</td></tr>')
    table = ("<div class=\"scroll\"><table><thead><tr><th scope=\"col\">model</th><th scope=\"col\">layer</th>"
             "<th scope=\"col\">channels</th><th scope=\"col\">rendered</th><th scope=\"col\">with examples</th>"
             "<th scope=\"col\">with circuits</th><th scope=\"col\">settings</th><th scope=\"col\">featvis</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table></div>")
    n = sum(len(la.units) for m in models.values() for la in m.layers.values())
    body = (f"<h1>Feature atlas</h1><p>{len(models)} model(s), "
            f"{sum(len(m.layers) for m in models.values())} layer(s), {n} unit(s). "
            "Every unit has a page at <code>model/layer/channel.html</code>: a stable link to cite.</p>" + table)
    return _page("Feature atlas", 0, body)


def _weights_label(w: dict) -> str:
    if not w:
        return "weights: not recorded"
    sha = (w.get("sha256") or "")[:12]
    return f"weights {w.get('spec', '?')} · sha256 {sha}"


def _model_page(model: Model) -> str:
    sections = []
    for la in model.layers.values():
        rendered = sum(1 for u in la.units.values() if u.images)
        rows = [f"<tr><th scope=\"row\">channels</th><td>{_fmt(la.channels)}</td></tr>",
                f"<tr><th scope=\"row\">units with a page</th><td>{len(la.units)} ({rendered} rendered)</td></tr>"]
        for rs in la.renders:
            v = rs.folder.versions
            rows.append(f"<tr><th scope=\"row\">{e(rs.kind)} renders</th><td>{e(rs.objective or '–')}<br>"
                        f"{e(_settings_line(rs.folder.settings))}<br>featvis {e(v.get('featvis', '?'))}, torch "
                        f"{e(v.get('torch', '?'))}, {e(v.get('device', '?'))}<br><small>from {e(rs.given)}</small></td></tr>")
        for t in la.topk:
            rows.append(f"<tr><th scope=\"row\">dataset examples</th><td>top {e(_fmt(t.get('k')))} of "
                        f"{e(str(t.get('images')))} at {e(_fmt(t.get('size')))} px ({e(str(t.get('score')))})</td></tr>")
        sections.append(f'<section><h2><a href="{e(la.slug)}/index.html">{e(la.name)}</a></h2>'
                        f"<table class=\"facts\">{''.join(rows)}</table></section>")
    body = (f"<h1>{e(model.name)}</h1><p>{e(_weights_label(model.weights))}. Render folders: "
            f"{e(', '.join(model.folders))}.</p>" + "".join(sections))
    return _page(f"{model.name} · feature atlas", 1, body, [("atlas", "../index.html"), (model.name, None)])


def _unit_value(unit: Unit) -> Optional[float]:
    return unit.primary.value if unit.primary is not None else None


def _layer_page(model: Model, layer: Layer, thumbs: Dict[int, Tuple[str, Tuple[int, int]]]) -> str:
    items = []
    for c, unit in layer.units.items():
        v = _unit_value(unit)
        label = f"{model.name} {layer.name}:{c}"
        if c in thumbs:
            src, (w, h) = thumbs[c]
            what = "feature visualization" if unit.images else "top dataset example"
            pic = (f'<img src="{e(src)}" width="{w}" height="{h}" loading="lazy" decoding="async" '
                   f'alt="{e(what)} of {e(label)}">')
        else:
            pic = '<span class="noimg">no image</span>'
        vtext = f'<span class="v">{v:.3g}</span>' if v is not None else ""
        items.append(f'<li data-c="{c}" data-v="{"" if v is None else repr(float(v))}"><a href="{c}.html">{pic}'
                     f'<span class="c">{c}</span>{vtext}</a></li>')
    n = len(layer.units)
    controls = (f'<form class="controls" role="search" onsubmit="return false">'
                f'<label>Sort <select id="sort"><option value="channel">by channel</option>'
                f'<option value="value-desc">by value, highest first</option>'
                f'<option value="value-asc">by value, lowest first</option></select></label> '
                f'<label>Channels <input id="filter" type="search" inputmode="numeric" autocomplete="off" '
                f'placeholder="e.g. 12, 100-120" aria-describedby="filter-help"></label> '
                f'<span id="shown" aria-live="polite">{n} units</span>'
                f'<small id="filter-help">Numbers and ranges (a-b, or a:b without b), separated by commas.</small></form>')
    of = f" of {layer.channels}" if layer.channels else ""
    body = (f"<h1>{e(model.name)} · {e(layer.name)}</h1>"
            f"<p>{n} unit(s){of}. Each image is the input optimized to excite one channel; the number under it is "
            f"the channel, then the final objective value.</p>{controls}"
            f'<ol class="grid" id="units">{"".join(items)}</ol>')
    return _page(f"{model.name} {layer.name} · feature atlas", 2, body,
                 [("atlas", "../../index.html"), (model.name, "../index.html"), (layer.name, None)])


def reproduce_command(rs: RenderSet, layer: str, channel: int) -> str:
    """The ``featvis render`` command that makes this unit's images of ``rs`` again (every setting
    spelled out, so that a change of defaults cannot change it)."""
    s, f = rs.folder.settings, rs.folder
    argv = ["featvis", "render", f.model, layer, "--channels", str(channel)]
    if s.get("neurons"):
        argv.append("--neurons")
    if s.get("preset"):  # the preset chooses the param (and the transforms no other flag names)
        argv += ["--preset", str(s["preset"])]
    for key, opt in (("size", "--size"), ("steps", "--steps"), ("lr", "--lr"), ("param", "--param"),
                     ("diversity", "--diversity"), ("seed", "--seed")):
        if key == "param" and s.get("preset"):
            continue
        if key in s:
            argv += [opt, f"{s[key]:g}" if isinstance(s[key], float) else str(s[key])]
        if key == "diversity" and int(s.get("diversity", 1)) > 1 and "diversity_weight" in s:
            argv += ["--diversity-weight", f"{s['diversity_weight']:g}"]
    if s.get("deterministic") is False:  # on by default; a folder made without it says so
        argv.append("--no-deterministic")
    if f.weights.get("spec"):
        argv += ["--weights", str(f.weights["spec"])]
    if s.get("device"):
        argv += ["--device", str(s["device"])]
    argv += ["--out", rs.given]
    return " ".join(shlex.quote(a) for a in argv)


def _unit_page(models: Dict[str, Model], model: Model, layer: Layer, unit: Unit, names: Dict[int, str],
               prev_c: Optional[int], next_c: Optional[int]) -> str:
    c = unit.channel
    label = f"{layer.name}:{c}"
    parts = []
    for rs in [r for r in layer.renders if any(p[0] is r for p in unit.images)]:
        ims = [im for r, im in unit.images if r is rs]
        figs = []
        for im in ims:
            what = f"{rs.kind} objective" + (f", diversity image {im.k + 1} of {len(ims)}" if len(ims) > 1 else "")
            figs.append(f'<figure><img src="{e(names[id(im)])}" alt="Feature visualization of {e(model.name)} '
                        f'{e(label)} ({e(what)})"><figcaption>seed {_fmt(im.seed)} · value {_fmt(im.value)}'
                        f'</figcaption></figure>')
        s = rs.folder.settings
        cmd = reproduce_command(rs, layer.name, c)
        parts.append(
            f'<section><h2>{e(rs.kind.capitalize())} visualization{"s" if len(ims) > 1 else ""}</h2>'
            f'<div class="vis">{"".join(figs)}</div>'
            f'<table class="facts"><tr><th scope="row">objective</th><td>{e(rs.objective or "–")}</td></tr>'
            f'<tr><th scope="row">steps</th><td>{_fmt(s.get("steps"))}</td></tr>'
            f'<tr><th scope="row">settings</th><td>{e(_settings_line(s))}</td></tr>'
            f'<tr><th scope="row">made with</th><td>featvis {e(rs.folder.versions.get("featvis", "?"))}, '
            f'{e(rs.folder.versions.get("device", "?"))}</td></tr></table>'
            f'<p class="cmdlabel">Reproduce (the image of each seed does not depend on the batch):</p>'
            f'<div class="cmd"><pre><code>{e(cmd)}</code></pre>'
            f'<button type="button" class="copy" hidden>Copy</button></div></section>')
    if unit.examples:
        figs = []
        for ex in unit.examples:
            figs.append(f'<figure><img src="{e(names[id(ex)])}" loading="lazy" alt="Dataset example {ex.rank + 1} for '
                        f'{e(model.name)} {e(label)}, activation {ex.value:.4g}"><figcaption>#{ex.rank + 1} · '
                        f'{ex.value:.4g}<br><small title="{e(ex.image)}">{e(_short(ex.image))}</small>'
                        f'</figcaption></figure>')
        parts.append(f'<section><h2>Top dataset examples</h2><p>Crops of the images that excite {e(label)} most '
                     f'(the unit\'s receptive field around its maximum), with the activation.</p>'
                     f'<div class="examples">{"".join(figs)}</div></section>')
    if unit.circuit:
        parts.append(_circuit_section(models, model, layer, unit, names))
    if not unit.images:
        parts.insert(0, "<p>This unit has no feature visualization in these render folders.</p>")
    nav = []
    head = ""
    if prev_c is not None:
        nav.append(f'<a rel="prev" href="{prev_c}.html">← {e(layer.name)}:{prev_c}</a>')
        head += f'<link rel="prev" href="{prev_c}.html">\n'
    if next_c is not None:
        nav.append(f'<a rel="next" href="{next_c}.html">{e(layer.name)}:{next_c} →</a>')
        head += f'<link rel="next" href="{next_c}.html">\n'
    pager = (f'<nav class="pager" aria-label="neighbouring units">{"".join(nav)}'
             f'<small>keys: ← →</small></nav>')
    body = f"<h1>{e(model.name)} · {e(label)}</h1>{pager}{''.join(parts)}"
    return _page(f"{model.name} {label} · feature atlas", 2, body,
                 [("atlas", "../../index.html"), (model.name, "../index.html"), (layer.name, "index.html"),
                  (str(c), None)], head=head)


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _circuit_section(models, model: Model, layer: Layer, unit: Unit, names: Dict[int, str]) -> str:
    circ = unit.circuit
    src = model.layers.get(circ.source)
    items = []
    for u in circ.inputs:
        name = f"{circ.source}:{u.channel}"
        target = src.units.get(u.channel) if src is not None else None
        heat = (f'<img src="{e(names[id(u)])}" loading="lazy" alt="Weights from {e(model.name)} {e(name)} to '
                f'{e(layer.name)}:{unit.channel}, {e(u.sign)}">') if id(u) in names else ""
        vis = ""
        if target is not None and target.primary is not None:
            vis = (f'<img src="../{e(src.slug)}/thumb/{u.channel}.jpg" loading="lazy" alt="feature visualization of '
                   f'{e(model.name)} {e(name)}">')
        caption = f"{e(name)} · {u.norm:.3g} · {e(u.sign)}"
        inner = f'<span class="pair">{vis}{heat}</span><span class="cap">{caption}</span>'
        if target is not None:
            inner = f'<a href="../{e(src.slug)}/{u.channel}.html">{inner}</a>'
        cls = "inh" if u.sign.startswith("inh") else "exc"
        items.append(f'<li class="{cls}">{inner}</li>')
    return (f'<section><h2>Built from {e(circ.source)}</h2><p>The upstream units with the strongest expanded '
            f'weights into {e(layer.name)}:{unit.channel} (the heatmap: weight by position; norm and sign).</p>'
            f'<ol class="circuit">{"".join(items)}</ol></section>')


# ==================================================================================================
# Serving
# ==================================================================================================

def serve(site, port: int = 8000, ready: Optional[Callable[[str, object], None]] = None) -> None:
    """Serve ``site`` at http://127.0.0.1:``port``/ until interrupted (``port`` 0: any free port).

    ``ready(url, server)`` is called once it listens (by default it prints the URL);
    ``server.shutdown()`` from another thread stops it.
    """
    import http.server
    site = Path(site)
    if not (site / "index.html").is_file():
        raise UsageError(f"{site} has no index.html; build it first: featvis site DIR [DIR ...] --out {site}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would drown the URL
            pass

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(site)))
    except OSError as e:
        raise UsageError(f"--port {port}: cannot listen there ({e.strerror}); pass another --port, or --port 0 for any free one") from e
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (ready or (lambda u, s: print(f"serving {site} at {u} (Ctrl-C to stop)", flush=True)))(url, server)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ==================================================================================================
# The command line: `featvis site DIR [DIR ...] --out SITE [--link] [--serve [--port N]]`
# ==================================================================================================

def add_arguments(parser) -> None:
    """Arguments of ``featvis site`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="render folders (featvis render / topk / circuits)")
    parser.add_argument("--out", default="site", metavar="SITE", help="the site's folder (default: site)")
    parser.add_argument("--link", action="store_true",
                        help="symlink images instead of copying them (the site then needs the render folders in place)")
    parser.add_argument("--thumb", type=int, default=THUMB, metavar="PX",
                        help=f"longest side of grid thumbnails (default: {THUMB})")
    parser.add_argument("--serve", action="store_true", help="then serve SITE on 127.0.0.1 (without DIR: serve it as it is)")
    parser.add_argument("--port", type=int, default=8000, help="port for --serve (default: 8000; 0: any free port)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``featvis site`` from parsed arguments (usage errors raise :class:`UsageError`)."""
    if not args.dirs and not args.serve:
        raise UsageError("featvis site needs render folders: featvis site DIR [DIR ...] --out SITE (or --serve to serve SITE)")
    if args.dirs:
        summary = build(args.dirs, args.out, link=args.link, thumb=args.thumb, progress=not args.quiet)
        print(summary)
    if args.serve:
        try:
            serve(args.out, args.port)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0


# ==================================================================================================
# Static files: one stylesheet, one script, one icon (no external fonts, scripts or CDNs)
# ==================================================================================================

FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#4b6bfb"/><circle cx="8" cy="8" r="4" fill="#ffd166"/></svg>
"""

CSS = """/* featvis site: system fonts only; readable from a phone to a laptop. */
:root { --fg: #1d1f23; --muted: #5c6370; --bg: #fbfbfc; --card: #fff; --line: #dfe2e7; --accent: #2f55d4;
        --exc: #1f8a4c; --inh: #c23b3b; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8eb; --muted: #a2a9b4; --bg: #15171a; --card: #1e2126; --line: #343841; --accent: #8ea8ff;
          --exc: #5ccf8a; --inh: #ff8080; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 1rem; }
header { padding-top: .75rem; }
footer { color: var(--muted); font-size: .85rem; padding: 2rem 1rem; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
h1 { font-size: 1.6rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
.crumbs { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .25rem; color: var(--muted); }
.crumbs li + li::before { content: "›"; margin-right: .25rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem; border-bottom: 1px solid var(--line); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { color: var(--muted); font-weight: normal; white-space: nowrap; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin: 1rem 0; }
.controls small { flex-basis: 100%; color: var(--muted); }
.controls input, .controls select { font: inherit; padding: .25rem .4rem; }
.controls input[aria-invalid="true"] { outline: 2px solid var(--inh); }
.grid { list-style: none; padding: 0; margin: 0; display: grid; gap: .5rem;
        grid-template-columns: repeat(auto-fill, minmax(104px, 1fr)); }
.grid li { content-visibility: auto; contain-intrinsic-size: auto 140px; }  /* off-screen cells cost no layout */
.grid a { display: block; text-decoration: none; color: var(--fg); background: var(--card);
          border: 1px solid var(--line); border-radius: 6px; padding: 4px; }
.grid a:hover { border-color: var(--accent); }
.grid img, .grid .noimg { display: block; width: 100%; height: auto; aspect-ratio: 1; object-fit: cover;
                          border-radius: 3px; background: var(--line); }
.grid .noimg { display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: .8rem; }
.grid .c { font-weight: 600; font-variant-numeric: tabular-nums; }
.grid .v { float: right; color: var(--muted); font-size: .8rem; line-height: 1.9; }
.vis, .examples { display: flex; flex-wrap: wrap; gap: .75rem; }
figure { margin: 0; }
.vis img { width: min(256px, 100%); height: auto; display: block; border-radius: 4px; }
.vis figure { flex: 0 1 256px; }
.examples img { width: 128px; height: auto; display: block; border-radius: 4px; }
figcaption { font-size: .85rem; color: var(--muted); font-variant-numeric: tabular-nums; }
.cmd { position: relative; }
.cmd pre { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: .75rem;
           white-space: pre-wrap; overflow-wrap: anywhere; margin: .25rem 0; padding-right: 4.5rem; user-select: all; }
.cmd button { position: absolute; top: .4rem; right: .4rem; font: inherit; font-size: .8rem; }
.cmdlabel { margin: .75rem 0 0; color: var(--muted); font-size: .9rem; }
.pager { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; }
.pager small { color: var(--muted); }
.circuit { list-style: none; padding: 0; display: grid; gap: .75rem; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); }
.circuit a, .circuit li > span { display: block; text-decoration: none; color: var(--fg); }
.circuit li { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--exc);
              border-radius: 6px; padding: 6px; }
.circuit li.inh { border-left-color: var(--inh); }
.circuit .pair { display: flex; gap: 4px; }
.circuit .pair img { width: 50%; height: auto; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated;
                     background: var(--line); border-radius: 3px; }
.circuit .pair img:first-child { image-rendering: auto; }
.circuit .cap { font-size: .85rem; font-variant-numeric: tabular-nums; }
@media (max-width: 600px) {
  body { font-size: 15px; }
  h1 { font-size: 1.3rem; }
  .grid { grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)); }
  .examples img { width: 96px; }
}
"""

JS = r"""/* featvis site: arrow keys on unit pages; sort and filter on layer pages; copy buttons. */
(function () {
  "use strict";

  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.defaultPrevented) return;
    var t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var rel = ev.key === "ArrowLeft" ? "prev" : ev.key === "ArrowRight" ? "next" : null;
    var link = rel && document.querySelector('link[rel="' + rel + '"]');
    if (link) { ev.preventDefault(); window.location.href = link.href; }
  });

  Array.prototype.forEach.call(document.querySelectorAll(".cmd"), function (box) {
    var button = box.querySelector("button.copy"), code = box.querySelector("code");
    if (!button || !code) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { button.textContent = "Copied"; };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(code);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      };
      try {
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(code.textContent).then(done, select);
        } else { select(); }
      } catch (e) { select(); }
    });
  });

  var grid = document.getElementById("units");
  if (!grid) return;
  var items = Array.prototype.slice.call(grid.children);
  var sort = document.getElementById("sort"), filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var chan = function (li) { return +li.getAttribute("data-c"); };
  var val = function (li) { var v = li.getAttribute("data-v"); return v === "" ? NaN : +v; };

  function ranges(text) {
    var out = [], bad = false;
    text.split(",").forEach(function (tok) {
      tok = tok.trim();
      if (!tok) return;
      var m;
      if ((m = /^(\d+)$/.exec(tok))) out.push([+m[1], +m[1]]);
      else if ((m = /^(\d+)\s*-\s*(\d+)$/.exec(tok))) out.push([+m[1], +m[2]]);
      else if ((m = /^(\d*)\s*:\s*(\d*)$/.exec(tok))) out.push([m[1] ? +m[1] : 0, m[2] ? +m[2] - 1 : Infinity]);
      else bad = true;
    });
    return { list: out, bad: bad };
  }

  var keys = items.map(function (li) { return { li: li, c: chan(li), v: val(li) }; });
  var order = keys, sorted = "channel", shownKey = null;

  function apply(save) {  // non-matching cells are taken out of the list (cheaper than hiding 2,000)
    var key = sort.value, r = ranges(filter.value), n = 0;
    filter.setAttribute("aria-invalid", r.bad ? "true" : "false");
    if (key !== sorted) {
      var sign = key === "value-asc" ? 1 : -1;
      order = keys.slice();
      if (key !== "channel") {
        order.sort(function (a, b) {
          if (isNaN(a.v) !== isNaN(b.v)) return isNaN(a.v) ? 1 : -1;
          return (a.v === b.v || isNaN(a.v)) ? a.c - b.c : sign * (a.v - b.v);
        });
      }
      sorted = key;
    }
    var stateKey = key + "|" + JSON.stringify(r.list);
    if (stateKey !== shownKey) {
      var frag = document.createDocumentFragment();
      order.forEach(function (k) {
        if (!r.list.length || r.list.some(function (x) { return k.c >= x[0] && k.c <= x[1]; })) {
          frag.appendChild(k.li);
          n++;
        }
      });
      grid.replaceChildren(frag);
      shownKey = stateKey;
    } else {
      n = grid.children.length;
    }
    shown.textContent = n === items.length ? n + " units" : n + " of " + items.length + " units";
    if (save) {
      var state = [];
      if (key !== "channel") state.push("sort=" + key);
      if (filter.value.trim()) state.push("filter=" + encodeURIComponent(filter.value.trim()));
      try { history.replaceState(null, "", state.length ? "#" + state.join("&") : location.pathname + location.search); }
      catch (e) { /* some browsers refuse replaceState on file:// pages */ }
    }
  }

  var params = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("=");
    if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
  });
  if (params.sort && sort.querySelector('option[value="' + params.sort.replace(/[^a-z-]/g, "") + '"]')) sort.value = params.sort;
  if (params.filter) filter.value = params.filter;
  if (sort.value !== "channel" || filter.value) apply(false);
  sort.addEventListener("change", function () { apply(true); });
  filter.addEventListener("input", function () { apply(true); });
})();
"""
