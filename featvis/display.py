"""Rich display in Jupyter: images as PNG bytes and data URIs, labelled HTML grids, a plain tile.

The ``_repr_html_`` / ``_repr_png_`` methods of :class:`featvis.Result`, objectives, render
folders and circuit figures are built from these (``featvis.show`` too), so every object draws its
images the same way. A core module (it imports only :mod:`featvis.io`): the engine may use it.

Every string that reaches HTML is escaped here; images are embedded as ``data:image/png;base64``
URIs, so a notebook saved with its outputs, or exported with ``jupyter nbconvert --to html``,
shows them without the files.
"""
from __future__ import annotations

import base64
import html
import io as _io
import math
import sys
from typing import List, Optional, Sequence, Tuple

#: At most this many images in one display (a layer of 1024 channels would otherwise put a 1024-image
#: HTML page into the notebook file); the rest are counted in a note under the grid.
MAX_IMAGES = 64
#: Small images are shown enlarged by a whole factor (pixels kept sharp) to at least this many CSS px.
MIN_DISPLAY_PX = 96
#: ... and large ones shrunk to at most this many.
MAX_DISPLAY_PX = 256


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where display goes to the notebook's output)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    try:
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - an odd shell: not a notebook
        return False


def pil(image):
    """A PIL image from a PIL image, a (3|4, H, W) or (1, 3|4, H, W) tensor in [0, 1] or an (H, W[, C]) array."""
    from .io import _as_pil
    return _as_pil(image)


def png_bytes(image) -> bytes:
    """``image`` (see :func:`pil`) encoded as PNG."""
    buffer = _io.BytesIO()
    pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(image) -> str:
    """``data:image/png;base64,...`` of ``image``: an ``<img src>`` that needs no file."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def display_px(size: int) -> int:
    """How wide (CSS px) to show an image ``size`` px wide: small ones enlarged by a whole factor."""
    if size < MIN_DISPLAY_PX:
        return size * math.ceil(MIN_DISPLAY_PX / size)
    return min(size, MAX_DISPLAY_PX)


#: A cell is at least this wide (CSS px), so that a caption under a small image wraps to a few lines.
MIN_CELL_PX = 120


def _img(image, alt: str) -> Tuple[str, int]:
    """The ``<img>`` of ``image`` and the width (CSS px) it is shown at."""
    im = pil(image)
    scale = display_px(max(im.size)) / max(im.size)
    w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    return (f'<img src="{data_uri(im)}" width="{w}" height="{h}" alt="{html.escape(alt)}" '
            'style="image-rendering: pixelated; background: #808080; display: block; margin: 0 auto">'), w


def html_grid(images: Sequence, labels: Optional[Sequence[str]] = None, captions: Optional[Sequence[str]] = None,
              title: Optional[str] = None, note: Optional[str] = None, limit: int = MAX_IMAGES) -> str:
    """A grid of ``images`` as HTML: each cell the image (a data URI), its label (bold) and caption
    (a value, say) under it; ``title`` above, ``note`` below. At most ``limit`` images are shown, and
    a line says how many were left out. All text is escaped."""
    images = list(images)
    shown = images[:limit]
    cells = []
    for i, image in enumerate(shown):
        label = "" if labels is None else str(labels[i])
        caption = "" if captions is None else str(captions[i])
        text = "".join([f"<b>{html.escape(label)}</b>" if label else "",
                        "<br>" if label and caption else "", html.escape(caption)])
        img, width = _img(image, label or f"image {i}")
        cells.append(f'<figure style="margin: 0; width: {max(width, MIN_CELL_PX)}px; text-align: center; '
                     f'font-size: 12px; line-height: 1.3">{img}'
                     f'<figcaption style="overflow-wrap: anywhere">{text}</figcaption></figure>')
    parts = ['<div class="featvis" style="font-family: sans-serif">']
    if title:
        parts.append(f'<div style="font-weight: 600; margin-bottom: 4px">{html.escape(title)}</div>')
    parts.append('<div style="display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start">'
                 + "".join(cells) + "</div>")
    notes = [note] if note else []
    if len(images) > len(shown):
        notes.append(f"{len(images) - len(shown)} more image(s) not shown (the first {len(shown)} of {len(images)})")
    parts += [f'<div style="color: #555; font-size: 12px; margin-top: 4px">{html.escape(n)}</div>' for n in notes]
    parts.append("</div>")
    return "".join(parts)


def html_table(rows: Sequence[Tuple[str, str]]) -> str:
    """Two columns of ``(name, value)`` rows as an HTML table, escaped."""
    body = "".join(f'<tr><th style="text-align: left; padding-right: 12px">{html.escape(str(k))}</th>'
                   f'<td style="text-align: left">{html.escape(str(v))}</td></tr>' for k, v in rows)
    return f'<table class="featvis" style="font-size: 12px">{body}</table>'


def tile(images: Sequence, cols: Optional[int] = None, pad: int = 2, limit: int = MAX_IMAGES, background=(255, 255, 255)):
    """The first ``limit`` ``images`` side by side in a near-square grid (no text), as one PIL image:
    what ``_repr_png_`` shows where HTML is not rendered. Labelled sheets are
    :func:`featvis.figures.sheet`."""
    from PIL import Image

    pics = [pil(im).convert("RGB") for im in list(images)[:limit]]
    if not pics:
        raise ValueError("tile() needs at least one image")
    cols = max(1, min(len(pics), cols or math.ceil(math.sqrt(len(pics)))))
    rows = math.ceil(len(pics) / cols)
    # each column as wide as its widest image, each row as high as its highest (sheets of different
    # layers stack without gaps)
    widths = [max(p.width for p in pics[c::cols]) for c in range(cols)]
    heights = [max(p.height for p in pics[r * cols:(r + 1) * cols]) for r in range(rows)]
    xs = [pad + sum(widths[:c]) + c * pad for c in range(cols)]
    ys = [pad + sum(heights[:r]) + r * pad for r in range(rows)]
    out = Image.new("RGB", (xs[-1] + widths[-1] + pad, ys[-1] + heights[-1] + pad), background)
    for i, p in enumerate(pics):
        r, c = divmod(i, cols)
        out.paste(p, (xs[c] + (widths[c] - p.width) // 2, ys[r] + (heights[r] - p.height) // 2))
    return out


def fmt(value: float) -> str:
    """A value for a caption: three significant digits."""
    return f"{value:.3g}"


__all__ = ["in_notebook", "pil", "png_bytes", "data_uri", "display_px", "html_grid", "html_table", "tile", "fmt",
           "MAX_IMAGES", "MIN_DISPLAY_PX", "MAX_DISPLAY_PX"]
