"""A render folder in Jupyter: a summary of its records and a preview sheet per layer.

Part of :class:`featvis.jobs.folder.RenderFolder` (see that package for the rules). Displaying
reads only: the records (through :meth:`read`) and the image files they name (through
:meth:`path`, so never a file outside the folder); nothing is written, not even a stale sheet.
"""
from __future__ import annotations

import html
from typing import List, Optional, Tuple

from ...errors import UsageError

#: A layer's preview shows at most this many of its images (a folder of whole layers holds thousands).
PREVIEW_IMAGES = 64
#: Preview cells are this many pixels (renders enlarged or shrunk to fit).
PREVIEW_CELL = 64
PREVIEW_COLUMNS = 8


class FolderDisplay:
    """``_repr_html_`` / ``_repr_png_`` for Jupyter (a mixin of RenderFolder)."""

    def preview(self, layer: str, manifest: Optional[dict] = None, limit: int = PREVIEW_IMAGES,
                cell: int = PREVIEW_CELL):
        """A labelled contact sheet of the first ``limit`` recorded images of ``layer`` (in memory,
        titled like the folder's sheets), or ``None`` when none of its files can be read."""
        from ...figures.grid import sheet
        from .derived import sheet_title
        manifest = manifest if manifest is not None else self.read()
        section = ((manifest or {}).get("layers") or {}).get(layer) or {}
        files, names = [], []
        for name, entry in list((section.get("images") or {}).items()):
            if len(files) == limit:
                break
            try:
                path = self.path(entry["file"])
            except UsageError:  # a record naming a path outside the folder: not shown
                continue
            if path.is_file():
                files.append(path)
                names.append(name)
        if not files:
            return None
        # 8 across: wide enough for the title line, short enough for a notebook's width
        return sheet(files, labels=names, cols=min(len(files), PREVIEW_COLUMNS), cell=cell, title=sheet_title(manifest, layer))

    def summary(self, manifest: Optional[dict] = None) -> List[Tuple[str, str]]:
        """``(name, value)`` rows: the folder, model, weights, settings, and per layer how many
        images and dataset examples it records."""
        m = manifest if manifest is not None else self.read()
        if m is None:
            return [("folder", str(self.root)), ("records", "none yet")]
        s = m.get("settings") or {}
        weights = m.get("weights") or {}
        rows = [("folder", str(self.root)), ("model", m.get("model") or "?"),
                ("weights", weights.get("spec", "?") if isinstance(weights, dict) else "?"),
                ("settings", ", ".join(f"{k} {s[k]}" for k in ("preset", "param", "size", "steps", "diversity", "seed")
                                       if s.get(k) is not None))]
        for layer, section in (m.get("layers") or {}).items():
            n, total = len(section.get("images") or {}), section.get("channels")
            rows.append((f"layer {layer}", f"{n} image{'s' if n != 1 else ''}"
                         + (f" ({total} channels in the layer)" if total else "")))
        for layer, section in (m.get("topk") or {}).items():
            chans = (section or {}).get("channels") or {}
            k = max((len(v) for v in chans.values()), default=0)
            rows.append((f"dataset examples {layer}", f"{len(chans)} channel(s), up to {k} each"))
        return rows

    def _repr_html_(self) -> str:
        from ...display import data_uri, html_table
        try:
            manifest = self.read()
        except UsageError as e:  # damaged records: say so, as `featvis merge` would
            return f"<p><b>{html.escape(repr(self))}</b>: {html.escape(str(e))}</p>"
        parts = [html_table(self.summary(manifest))]
        for layer, section in ((manifest or {}).get("layers") or {}).items():
            image = self.preview(layer, manifest)
            if image is None:
                continue
            n = len(section.get("images") or {})
            more = f"<div style='font-size: 12px; color: #555'>the first {PREVIEW_IMAGES} of {n} images</div>" \
                if n > PREVIEW_IMAGES else ""
            parts.append(f'<div style="margin-top: 8px"><img src="{data_uri(image)}" alt="{html.escape(layer)} sheet" '
                         f'width="{image.width}" height="{image.height}">{more}</div>')
        return '<div class="featvis" style="font-family: sans-serif">' + "".join(parts) + "</div>"

    def _repr_png_(self) -> Optional[bytes]:
        """The layers' preview sheets one under another (``None``, so no PNG, without records)."""
        from ...display import png_bytes, tile
        manifest = self.read()
        sheets = [im for im in (self.preview(layer, manifest) for layer in ((manifest or {}).get("layers") or {}))
                  if im is not None]
        return png_bytes(tile(sheets, cols=1, pad=0)) if sheets else None
