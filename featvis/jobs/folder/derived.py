"""Derived files: contact sheets and manifest.json, rebuilt from the records whenever stale.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict, Optional

from .files import _FOLDER_TAG, MANIFEST, PARTS, _crash_point, _sha256
from .records import dumps, records_digest

#: Sheets enlarge smaller renders to cells this wide (whole-pixel steps): a 64 px layer then makes a
#: sheet one can read, not one 208 px wide.
SHEET_MIN_CELL = 128


def sheet_title(manifest: dict, layer: str) -> str:
    """``"inceptionv1 mixed4a: channel, fourier 128 px, 512 steps"``: what a sheet shows; with a
    preset ``"... channel, preset fourier-crops (fourier 224 px), 512 steps"``."""
    s = manifest.get("settings") or {}
    what = "neuron" if s.get("neurons") else "channel"
    extra = f", {s['diversity']} per channel" if int(s.get("diversity", 1)) > 1 else ""
    image = f"{s.get('param', '?')} {s.get('size', '?')} px"
    recipe = f"preset {s['preset']} ({image})" if s.get("preset") else image
    return f"{manifest.get('model', '?')} {layer}: {what}, {recipe}, {s.get('steps', '?')} steps{extra}"


class FolderDerived:
    """Sheets and the merged manifest (a mixin of RenderFolder)."""

    def _sheet_image(self, layer: str, name: str, entry: dict, size: int):
        """A recorded image for a sheet, through the bounded loader. A file that is not the one
        recorded (missing, truncated, replaced, a FIFO) leaves its cell blank, with a warning naming
        the unit (``featvis merge`` then lists it as missing; rendering again redoes it)."""
        from PIL import Image
        unit = f"{layer}:{name.split('_')[0]}" + (f" (image {name})" if "_" in name else "")
        if not self.image_ok(entry):
            print(f"featvis: {self.path(entry['file'])} is missing, or not the image recorded for {unit} "
                  "(truncated or replaced?); its cell of the sheet is left blank: run the featvis render command "
                  "again to render it anew", file=sys.stderr)
            return Image.new("RGB", (size, size), (255, 255, 255))
        return self.load_image(entry["file"], unit).convert("RGB")

    # --- derived files -----------------------------------------------------------------------------

    def _derived(self) -> dict:
        """``manifest.json``'s record of the derived files and parts it was built from ({} if none/damaged)."""
        try:
            data = json.loads(self.read_text(MANIFEST))
            return data.get("derived", {}) if isinstance(data, dict) and isinstance(data.get("derived"), dict) else {}
        except (OSError, ValueError, RecursionError):  # UsageError is a ValueError: missing, a FIFO, too large
            return {}

    def _part_digests(self) -> Dict[str, Optional[str]]:
        return {w: _sha256(self.root / PARTS / f"{w}.json") for w in self.part_names()}

    def sheet_is_stale(self, layer: str, manifest: Optional[dict] = None) -> bool:
        """Whether ``<layer>_sheet.png`` is missing, damaged, or older than the layer's records."""
        manifest = manifest if manifest is not None else self.read()
        section = (manifest or {}).get("layers", {}).get(layer)
        if not section or not section.get("images"):
            return False
        have = self._derived().get("sheets", {}).get(layer, {})
        return (have.get("records") != records_digest(section)
                or have.get("sha256") is None or _sha256(self.root / self.sheet_rel(layer)) != have["sha256"])

    def manifest_is_stale(self) -> bool:
        """Whether ``manifest.json`` is missing, damaged, or not the merge of the current parts."""
        if not self.part_names():
            return False  # a version 1 folder: its manifest is the record itself
        return self._derived().get("parts") != self._part_digests()

    def merge(self, sheets=None, wait: Optional[float] = None) -> dict:
        """Under the folder lock: rebuild the given layers' sheets (``None``: every stale one)
        and write ``manifest.json`` as the merge of the parts if anything changed. Returns the
        merged manifest. The coming ``featvis merge`` calls this."""
        with self._folder_lock(wait):
            return self._merge_locked(sheets)

    def _merge_locked(self, sheets=None) -> dict:
        if not self.part_names():
            return self.read() or {}
        manifest = self.read()
        derived = self._derived()
        sheet_info = dict(derived.get("sheets", {}))
        todo = [layer for layer in manifest["layers"] if self.sheet_is_stale(layer, manifest)] if sheets is None \
            else [layer for layer in sheets if self.sheet_is_stale(layer, manifest)]
        for layer in todo:
            path = self.write_sheet(layer, manifest)
            if path is not None:
                sheet_info[layer] = {"file": self.sheet_rel(layer), "sha256": _sha256(path),
                                     "records": records_digest(manifest["layers"][layer])}
        sheet_info = {k: v for k, v in sheet_info.items() if k in manifest["layers"]}
        digests = self._part_digests()
        if todo or derived.get("parts") != digests or derived.get("sheets", {}) != sheet_info:
            manifest["derived"] = {"parts": digests, "sheets": sheet_info}
            text = dumps(manifest)
            self.write_file(MANIFEST, lambda tmp: Path(tmp).write_text(text), tag=_FOLDER_TAG)
            _crash_point("manifest")
        manifest["derived"] = {"parts": digests, "sheets": sheet_info}
        return manifest

    def refresh(self, wait: Optional[float] = None) -> bool:
        """Rebuild whatever derived file is stale (``manifest.json``, sheets); nothing is written
        when all are current. Returns whether anything was rebuilt."""
        if not self.part_names():
            return False
        manifest = self.read()
        stale = self.manifest_is_stale() or any(self.sheet_is_stale(layer, manifest) for layer in manifest["layers"])
        if stale:
            self.merge(sheets=None, wait=wait)
        return stale

    def write_sheet(self, layer: str, manifest: Optional[dict] = None, cols: Optional[int] = None,
                    labels: bool = True, path=None, cell: Optional[int] = None, title: bool = True) -> Optional[Path]:
        """The contact sheet of ``layer``'s recorded images: ``<layer>_sheet.png`` in the folder (a
        derived file), or ``path`` (PNG or PDF, anywhere the user names). Rows hold one channel's
        ``diversity`` images when there are several. ``cell``: the cell size in pixels (default:
        the render size, enlarged by a whole factor to at least :data:`SHEET_MIN_CELL`); ``title``:
        the model, layer and settings above the grid (:func:`sheet_title`). ``None`` when the layer
        has no images."""
        from ...figures.grid import sheet
        manifest = manifest if manifest is not None else self.read()
        entries = list(manifest["layers"][layer]["images"].items())
        if not entries:
            return None
        settings = manifest.get("settings") or {}
        K = int(settings.get("diversity", 1))
        if any(e.get("negative") for _, e in entries):  # a channel's minimizing images beside its maximizing ones
            cols = cols or (2 * K if K > 1 else 2 * math.ceil(math.sqrt(len(entries) / 2)))
        cols = cols or (K if K > 1 else math.ceil(math.sqrt(len(entries))))
        if cell is None:
            size = int(settings.get("size", SHEET_MIN_CELL))
            cell = size * math.ceil(SHEET_MIN_CELL / size) if size < SHEET_MIN_CELL else size
        files = [self._sheet_image(layer, name, e, int(settings.get("size", SHEET_MIN_CELL))) for name, e in entries]
        names = [name for name, _ in entries] if labels else None
        head = sheet_title(manifest, layer) if title else None
        if path is not None:
            sheet(files, labels=names, cols=cols, path=path, cell=cell, title=head)
            return Path(path)
        image = sheet(files, labels=names, cols=cols, cell=cell, title=head)
        out = self.write_file(self.sheet_rel(layer), lambda tmp: image.save(tmp, format="PNG"), tag=_FOLDER_TAG)
        _crash_point("sheet")
        return out
