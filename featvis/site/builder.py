"""Writing the site: a plan of files, then only the changes (see :func:`build`)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import UsageError
from . import pages
from .collect import STATIC, Folder, Layer, Model, collect, read_folder, safe_name

#: Longest side of a layer grid thumbnail, in pixels (cells are ~120 CSS px: sharp at 1.3x zoom).
THUMB = 160
#: The record of what a run wrote, inside SITE.
STATE = ".featvis-site.json"
STATE_VERSION = 1
#: The package files copied into SITE/_static/ (featvis/site/static/).
STATIC_FILES = ("site.css", "site.js", "favicon.svg")


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

    def __init__(self, out: Path, link: bool, plain: Optional[Dict[str, Optional[str]]] = None):
        self.out, self.link = out, link
        state = load_state(out)
        self.old = dict(state.get("files") or {})
        self.plain = dict(state.get("models") or {}) if plain is None else plain
        self.files: Dict[str, dict] = {}
        if not (out / STATE).exists():  # claim the folder first: a run killed early can be re-run
            self._save(self.old)
        self.counts = {"written": 0, "unchanged": 0, "removed": 0}

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
        source = [_where(src), st.st_size, st.st_mtime_ns, "link" if self.link else "copy"]
        if self._fresh(rel, source):
            return self._done(rel, source, False)
        dest = self._dest(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        if self.link:
            os.symlink(os.path.relpath(src, dest.parent), dest)
        else:
            _replace(dest, lambda tmp: _copy_regular(src, tmp))
        self._done(rel, source, True)

    def thumbnail(self, rel: str, src: Path, size: int, what: str = "") -> Tuple[int, int]:
        """A JPEG at most ``size`` px on its longer side, made once per version of ``src``; its (w, h).
        ``src`` is decoded through the bounded loader; a damaged one is a :class:`UsageError`
        naming ``what`` (the unit)."""
        st = os.stat(src)
        source = [_where(src), st.st_size, st.st_mtime_ns, f"thumb{size}"]
        if self._fresh(rel, source) and isinstance(self.old[rel].get("wh"), list) and len(self.old[rel]["wh"]) == 2:
            wh = tuple(self.old[rel]["wh"])
            self._done(rel, source, False, wh=list(wh))
            return wh
        from PIL import Image as PILImage

        from ..io import load_image
        im = load_image(src, name=f"{src} ({what})" if what else None).convert("RGB")
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
        from ..io import atomic_write
        text = json.dumps({"featvis_site": STATE_VERSION, "featvis": __version__, "models": self.plain, "files": files},
                          indent=0)
        atomic_write(self.out / STATE, lambda tmp: Path(tmp).write_text(text + "\n"))


def load_state(out: Path) -> dict:
    """The record of the site's last run (``{}`` when there is none, or it is not ours): its files,
    and which weights of each model own the plain model path."""
    path = out / STATE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > (64 << 20):
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("featvis_site") != STATE_VERSION:
        return {}
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    return {"files": {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, dict)},
            "models": {k: v for k, v in models.items() if isinstance(k, str) and (v is None or isinstance(v, str))}}


def _where(src: Path) -> str:
    """A source file as the site's record keeps it: a digest of its path, so that the published
    site carries no local path (it only needs to notice that a file's source changed)."""
    import hashlib
    return hashlib.sha256(str(src).encode()).hexdigest()[:32]


def _copy_regular(src: Path, dest: str) -> None:
    """Copy ``src`` (a regular file, checked on the open descriptor: a FIFO neither blocks nor is read)."""
    import stat
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UsageError(f"{src} is not a regular file; featvis site copies only plain image files: replace it")
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out)


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
    plain = dict(load_state(out).get("models") or {})
    models = collect(folders, plain)
    warnings = [w for _, f in folders for w in f.warnings]
    for w in warnings:
        warn(w)
    for tmp in out.rglob(".*.site-tmp"):  # left by a killed run (only ours carry this suffix)
        tmp.unlink()
    writer = _Writer(out, link, plain)
    static = resources.files(__package__) / "static"
    for name in STATIC_FILES:
        writer.text(f"{STATIC}/{name}", (static / name).read_text(encoding="utf-8"))
    n_units = sum(len(la.units) for mo in models.values() for la in mo.layers.values())
    from ..progress import bar as tqdm
    with tqdm(total=n_units, unit="unit", desc="featvis site", disable=not progress, leave=False) as bar:
        for model in models.values():
            for layer in model.layers.values():
                _write_layer(writer, models, model, layer, thumb, bar)
            writer.text(f"{model.slug}/index.html", pages.model_page(model))
    writer.text("index.html", pages.index_page(models))
    writer.finish()
    c = writer.counts
    return Summary(out, len(models), sum(len(m.layers) for m in models.values()), n_units, c["written"],
                   c["unchanged"], c["removed"], warnings)


# --- assets of a layer ---------------------------------------------------------------------------

def _asset_name(rs_tag: str, folder: Path, layer: str, path: Path) -> str:
    """Where a folder's file goes under ``<layer>/img/``: its path below ``DIR/<layer>/``."""
    base = folder / layer
    rel = path.relative_to(base).as_posix() if base in path.parents else "_/" + path.relative_to(folder).as_posix()
    return f"img/{rs_tag}/" + "/".join(safe_name(part) for part in rel.split("/"))  # safe in a URL as it is


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
            names[id(ex)] = f"img/topk{ex.source or ''}/" + "/".join(safe_name(p) for p in _tail(ex.path, "topk").split("/"))
            writer.image(f"{base}/{names[id(ex)]}", ex.path)
        if unit.circuit:
            for u in unit.circuit.inputs:
                if u.heatmap is not None:
                    names[id(u)] = "img/circuits/" + safe_name(u.heatmap.name)
                    writer.image(f"{base}/{names[id(u)]}", u.heatmap)
        first = unit.primary.path if unit.primary else (unit.examples[0].path if unit.examples else None)
        if first is not None:
            thumbs[c] = (f"thumb/{c}.jpg", writer.thumbnail(f"{base}/thumb/{c}.jpg", first, thumb,
                                                            f"{model.name} {layer.name}:{c}"))
    chans = list(layer.units)
    for i, (c, unit) in enumerate(layer.units.items()):
        prev_c = chans[i - 1] if i > 0 else None
        next_c = chans[i + 1] if i + 1 < len(chans) else None
        writer.text(f"{base}/{c}.html", pages.unit_page(models, model, layer, unit, src_of[c], prev_c, next_c))
        bar.update(1)
    writer.text(f"{base}/index.html", pages.layer_page(model, layer, thumbs))
    if layer.atlas is not None:
        _write_atlas(writer, model, layer, base)


def _write_atlas(writer: _Writer, model: Model, layer: Layer, base: str) -> None:
    """The layer's activation atlas page (``atlas.html``) and its images under ``img/atlas/``."""
    at = layer.atlas
    writer.image(f"{base}/img/atlas/atlas.png", at["image"])
    names = {}
    for c in at["cells"]:
        names[(c["x"], c["y"])] = f"img/atlas/cells/{c['y']}_{c['x']}.png"
        writer.image(f"{base}/{names[(c['x'], c['y'])]}", c["path"])
    writer.text(f"{base}/atlas.html", pages.atlas_page(model, layer, names))


def _tail(path: Path, marker: str) -> str:
    """The part of ``path`` after its last ``marker`` folder (``.../topk/476/0.png`` -> ``476/0.png``)."""
    parts = path.parts
    idx = max(i for i, p in enumerate(parts) if p == marker) if marker in parts else len(parts) - 1
    return "/".join(parts[idx + 1:]) or path.name
