"""Drawing with Pillow: labelled figure grids for papers (PNG with its DPI, one-page PDF) and contact sheets.

``figure(rows, row_titles=..., col_titles=..., captions=..., out="fig.pdf")`` lays out any grid of
images; ``sheet(images, labels=...)`` is the fast contact sheet of a layer's renders (thousands of
cells). Both take PIL images, (3, H, W) tensors, arrays or paths.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..io import PathLike, _as_pil, atomic_write, save_image, to_pil

# --------------------------------------------------------------------------------------------------
# Figures for papers: a labelled grid of images, written as PNG (DPI stored) or a one-page PDF at
# a stated physical size.
# --------------------------------------------------------------------------------------------------

#: Text height in pixels at the figure's own resolution (Pillow's built-in font, scalable since 10.1).
FONT_SIZE = 14
_BACKGROUNDS = {"white": (255, 255, 255, 255), "transparent": (255, 255, 255, 0)}
_INK = (0, 0, 0, 255)
_ELLIPSIS = "\u2026"


def load_font(size: int = FONT_SIZE):
    """Pillow's built-in font at ``size`` px; the fixed-size bitmap font on Pillow < 10.1."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 takes no size
        return ImageFont.load_default()


def _line_height(font) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _text_width(font, text: str) -> int:
    return int(math.ceil(font.getlength(text)))


def _fit_line(font, text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) to at most ``width`` px."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + _ELLIPSIS) > width:
        text = text[:-1]
    return text + _ELLIPSIS if text else ""


def _wrap(font, text: str, width: int) -> List[str]:
    """Lines of ``text`` no wider than ``width`` px, broken at spaces (and at newlines); a single
    word wider than ``width`` is cut with an ellipsis."""
    lines: List[str] = []
    for para in str(text).split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if line and _text_width(font, trial) > width:
                lines.append(_fit_line(font, line, width))
                line = word
            else:
                line = trial
        lines.append(_fit_line(font, line, width))
    return lines


def _as_image(item) -> Optional[Image.Image]:
    """A PIL image from a PIL image, a (3,H,W)/(1,3,H,W) tensor in [0,1], an (H,W,3) array, a path, or None."""
    if item is None or isinstance(item, Image.Image):
        return item
    if isinstance(item, torch.Tensor):
        if item.dim() == 4 and item.shape[0] == 1:
            item = item[0]
        if item.dim() != 3:
            raise ValueError(f"a figure cell must be one image (3, H, W), got a tensor of shape {tuple(item.shape)}")
        return to_pil(item[None])[0]
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            item = (np.clip(item, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(item)
    if isinstance(item, (str, os.PathLike)):
        from ..io import load_image
        return load_image(item)  # bounded: a regular file, pixels and aspect checked before decoding
    raise TypeError(f"a figure cell must be a PIL image, a tensor, an array, a path or None, got {type(item).__name__}")


def _grid(rows) -> List[List[Optional[Image.Image]]]:
    if isinstance(rows, torch.Tensor):
        if rows.dim() != 5:
            raise ValueError(f"a tensor of rows must be (rows, cols, 3, H, W), got shape {tuple(rows.shape)}")
    grid = [[_as_image(item) for item in row] for row in rows]
    if not grid or not any(grid):
        raise ValueError("a figure needs at least one row with at least one image")
    return grid


def _scaled(size: Tuple[int, int], cell: Tuple[int, int]) -> Tuple[int, int]:
    """The size of an image of ``size`` fitted into ``cell``, keeping its aspect ratio."""
    s = min(cell[0] / size[0], cell[1] / size[1])
    return max(1, round(size[0] * s)), max(1, round(size[1] * s))


@dataclass(frozen=True)
class Layout:
    """Where each part of a :func:`figure` goes, in pixels (x to the right, y down)."""

    size: Tuple[int, int]  # (W, H) of the whole figure
    cell: Tuple[int, int]  # (w, h) of every image cell
    pad: int
    font_size: int
    cells: Dict[Tuple[int, int], Tuple[int, int]]  # (row, col) -> (x, y) of the cell's top-left corner
    row_title_lines: List[List[str]]
    col_title_lines: List[List[str]]
    row_title_width: int  # 0 without row titles
    col_title_height: int  # 0 without column titles
    caption_height: int  # 0 without captions
    scale_bar_height: int  # 0 without a scale bar


def figure_layout(n_rows: int, n_cols: int, cell: Tuple[int, int], pad: int = 8,
                  row_titles: Optional[Sequence[str]] = None, col_titles: Optional[Sequence[str]] = None,
                  captions: bool = False, scale_bar: bool = False, font_size: int = FONT_SIZE) -> Layout:
    """The geometry of a :func:`figure`, without drawing it.

    Width: ``pad + [row title band + pad] + n_cols * cell_w + (n_cols - 1) * pad + pad``.
    Height: ``pad + [column title band + pad] + n_rows * (cell_h + caption) + (n_rows - 1) * pad
    + pad + [scale bar band + pad]``, where a caption band and the scale bar band are one line of
    text high and a column title band is as many lines as its longest (wrapped) title.
    """
    cw, ch = cell
    if cw < 1 or ch < 1 or pad < 0:
        raise ValueError(f"cell must be positive and pad non-negative, got cell={cell}, pad={pad}")
    font = load_font(font_size)
    lh = _line_height(font)
    rt_lines = [str(t).split("\n") if t is not None else [] for t in (row_titles or [])]
    ct_lines = [_wrap(font, t, cw + pad) if t else [] for t in (col_titles or [])]
    if len(rt_lines) > n_rows:
        raise ValueError(f"{len(rt_lines)} row titles for {n_rows} rows; give one title per row (None for none)")
    if len(ct_lines) > n_cols:
        raise ValueError(f"{len(ct_lines)} column titles for {n_cols} columns; give one title per column (None for none)")
    rtw = max((_text_width(font, line) for lines in rt_lines for line in lines), default=0)
    cth = lh * max((len(lines) for lines in ct_lines), default=0)
    cap = lh if captions else 0
    sbh = lh if scale_bar else 0
    left = pad + (rtw + pad if rtw else 0)
    top = pad + (cth + pad if cth else 0)
    cells = {(r, c): (left + c * (cw + pad), top + r * (ch + cap + pad)) for r in range(n_rows) for c in range(n_cols)}
    width = left + n_cols * cw + (n_cols - 1) * pad + pad
    height = top + n_rows * (ch + cap) + (n_rows - 1) * pad + pad + (sbh + pad if sbh else 0)
    return Layout((width, height), (cw, ch), pad, font_size, cells, rt_lines, ct_lines, rtw, cth, cap, sbh)


def _draw(grid, layout: Layout, captions, scale_bar, background: str, resample) -> Image.Image:
    font = load_font(layout.font_size)
    lh = _line_height(font)
    cw, ch = layout.cell
    pad = layout.pad
    canvas = Image.new("RGBA", layout.size, _BACKGROUNDS[background])
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(grid):
        for c, im in enumerate(row):
            x, y = layout.cells[r, c]
            if im is not None:
                size = _scaled(im.size, layout.cell)
                im = im.convert("RGBA")
                if size != im.size:
                    im = im.resize(size, resample)
                layer = Image.new("RGBA", layout.size, (0, 0, 0, 0))
                layer.paste(im, (x + (cw - size[0]) // 2, y + (ch - size[1]) // 2))
                canvas.alpha_composite(layer)
            text = captions[r][c] if captions and r < len(captions) and c < len(captions[r]) else None
            if text:
                line = _fit_line(font, str(text), cw + pad)
                draw.text((x + (cw - _text_width(font, line)) // 2, y + ch), line, font=font, fill=_INK)
    for r, lines in enumerate(layout.row_title_lines):
        x_right = layout.cells[r, 0][0] - pad
        y0 = layout.cells[r, 0][1] + (ch - lh * len(lines)) // 2
        for i, line in enumerate(lines):
            draw.text((x_right - _text_width(font, line), y0 + i * lh), line, font=font, fill=_INK)
    for c, lines in enumerate(layout.col_title_lines):
        x, y = layout.cells[0, c]
        y0 = y - pad - lh * len(lines)  # bottom-aligned, just above the grid
        for i, line in enumerate(lines):
            draw.text((x + (cw - _text_width(font, line)) // 2, y0 + i * lh), line, font=font, fill=_INK)
    if scale_bar is not None:
        length_px, label = scale_bar
        n_cols = max(len(row) for row in grid)
        right = layout.cells[0, n_cols - 1][0] + cw  # the grid's right edge
        y = layout.size[1] - pad - layout.scale_bar_height
        thick = max(2, layout.font_size // 5)
        yb = y + (lh - thick) // 2
        draw.rectangle([right - length_px, yb, right - 1, yb + thick - 1], fill=_INK)
        if label:
            draw.text((right - length_px - pad - _text_width(font, label), y), label, font=font, fill=_INK)
    return canvas if background == "transparent" else canvas.convert("RGB")


def _scale_bar_px(grid, cell, scale_bar) -> Optional[Tuple[int, str]]:
    """``(length, label)`` or ``length`` in source pixels -> (length in figure pixels, label)."""
    if scale_bar is None:
        return None
    length, label = scale_bar if isinstance(scale_bar, (tuple, list)) else (scale_bar, None)
    if length <= 0:
        raise ValueError(f"scale_bar length must be positive, got {length}")
    first = next(im for row in grid for im in row if im is not None)
    factor = _scaled(first.size, cell)[0] / first.size[0]
    return max(1, round(length * factor)), (f"{length:g} px" if label is None else str(label))


def _target_pixels(size_in, dpi: float, natural: Tuple[int, int]) -> Tuple[int, int]:
    if isinstance(size_in, (tuple, list)):
        w_in, h_in = (float(v) for v in size_in)
    else:
        w_in = float(size_in)
        h_in = w_in * natural[1] / natural[0]
    if w_in <= 0 or h_in <= 0:
        raise ValueError(f"size_in must be positive inches, got {size_in}")
    return max(1, round(w_in * dpi)), max(1, round(h_in * dpi))


def figure(rows, row_titles: Optional[Sequence[Optional[str]]] = None,
           col_titles: Optional[Sequence[Optional[str]]] = None, captions=None, cell=None, pad: int = 8,
           scale_bar=None, background: str = "white", font_size: int = FONT_SIZE, dpi: float = 150,
           size_in=None, out: Optional[PathLike] = None, resample=Image.LANCZOS) -> Image.Image:
    """A grid of images with row and column titles; written to ``out`` (``.png`` or ``.pdf``) if given.

    ``rows``: a list of rows, each a list of images (PIL images, (3,H,W) tensors in [0,1], (H,W,3)
    arrays, file paths, or None for an empty cell), or a (rows, cols, 3, H, W) tensor.
    ``row_titles`` / ``col_titles``: one string per row / column (None leaves it blank); column
    titles wrap at spaces to the cell width, row titles break only at ``"\\n"``. ``captions``: text
    under each image, a list of lists shaped like ``rows``.
    ``cell``: ``(w, h)`` or an int, the box each image is fitted into (aspect kept, centred);
    by default the largest image. ``pad``: pixels between cells, between titles and cells, and
    around the edge (see :func:`figure_layout` for the exact size).
    ``scale_bar``: ``length`` or ``(length, label)``: a bar under the grid's right edge that is
    ``length`` pixels *of the source images* long (at the scale the first image is drawn).
    ``background``: ``"white"`` or ``"transparent"`` (RGBA PNG; a PDF with an alpha channel).
    ``dpi``: stored in the PNG; with no ``size_in`` the PDF page is pixels / ``dpi`` inches.
    ``size_in``: the physical size, ``(width, height)`` in inches or a width alone (the height then
    follows the figure): the figure is laid out again at ``size * dpi`` pixels (text drawn at that
    resolution, not resampled) and centred on a page of exactly that size.
    Returns the image as written (RGB, or RGBA for a transparent background).

    >>> figure([[vis, *crops]], row_titles=["mixed4a:476"], col_titles=["optimized", "dataset"],
    ...        dpi=300, size_in=(6.75, 1.2), out="fig1.pdf")
    """
    if background not in _BACKGROUNDS:
        raise ValueError(f"background={background!r}: expected 'white' or 'transparent'")
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    grid = _grid(rows)
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    if cell is None:
        sizes = [im.size for row in grid for im in row if im is not None]
        cell = (max(w for w, _ in sizes), max(h for _, h in sizes))
    elif isinstance(cell, int):
        cell = (cell, cell)
    cell = (int(cell[0]), int(cell[1]))
    if captions is not None and len(captions) > n_rows:
        raise ValueError(f"captions has {len(captions)} rows but the figure has {n_rows}")

    def lay(cell_, pad_, font_):
        return figure_layout(n_rows, n_cols, cell_, pad_, row_titles, col_titles,
                             captions is not None, scale_bar is not None, font_)

    layout = lay(cell, pad, font_size)
    page = None
    if size_in is not None:
        page = _target_pixels(size_in, dpi, layout.size)
        s = min(page[0] / layout.size[0], page[1] / layout.size[1])
        for _ in range(50):  # text does not scale exactly linearly: shrink until it fits
            scaled_cell = (max(1, int(cell[0] * s)), max(1, int(cell[1] * s)))
            layout = lay(scaled_cell, round(pad * s), max(1, round(font_size * s)))
            if layout.size[0] <= page[0] and layout.size[1] <= page[1]:
                break
            s *= 0.99 * min(1.0, page[0] / layout.size[0], page[1] / layout.size[1])
        else:
            raise ValueError(f"size_in={size_in} at dpi={dpi} ({page[0]}x{page[1]} px) is too small for this figure")
    bar = _scale_bar_px(grid, layout.cell, scale_bar)
    grid_width = n_cols * layout.cell[0] + (n_cols - 1) * layout.pad
    if bar is not None and bar[0] > grid_width:
        raise ValueError(f"the scale bar ({bar[0]} px) is wider than the grid ({grid_width} px); give a shorter length")
    image = _draw(grid, layout, captions, bar, background, resample)
    if page is not None:
        canvas = Image.new(image.mode, page, _BACKGROUNDS[background][:len(image.mode)])
        canvas.paste(image, ((page[0] - image.width) // 2, (page[1] - image.height) // 2))
        image = canvas
    if out is not None:
        page_in = None
        if page is not None:  # the stated inches, exactly; a lone width gets the height of its pixels
            w_in = float(size_in[0] if isinstance(size_in, (tuple, list)) else size_in)
            page_in = tuple(size_in) if isinstance(size_in, (tuple, list)) else (w_in, w_in * page[1] / page[0])
        save_figure(image, out, dpi, size_in=page_in)
    return image


def save_figure(image: Image.Image, out: PathLike, dpi: float = 150, size_in=None) -> Path:
    """Write ``image`` atomically as PNG (``dpi`` stored) or as a one-page PDF.

    The PDF page is ``size_in`` inches (``(w, h)``) if given, else pixels / ``dpi``. Pillow stores
    an RGB page as JPEG, so it is written at quality 95 without chroma subsampling to keep text
    sharp; an RGBA (transparent) page is stored as JPEG 2000 with its alpha.
    """
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        kwargs = dict(format="PNG", dpi=(dpi, dpi))
    elif suffix == ".pdf":
        w_in, h_in = size_in if size_in is not None else (image.width / dpi, image.height / dpi)
        xres, yres = image.width / float(w_in), image.height / float(h_in)
        # ``dpi`` per axis (Pillow >= 10.1) makes the page exactly w_in x h_in inches; older Pillow
        # reads ``resolution`` alone.
        kwargs = dict(format="PDF", dpi=(xres, yres), resolution=xres, quality=95, subsampling=0)
    else:
        raise ValueError(f"cannot write a figure to {str(out)!r}: use a .png or .pdf suffix")
    return atomic_write(out, lambda tmp: image.save(tmp, **kwargs))


def _label_font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


#: A sheet label wraps to at most this many lines under its cell.
LABEL_LINES = 2


def _label_lines(font, text: str, width: int) -> List[str]:
    """``text`` wrapped to ``width`` px, at most :data:`LABEL_LINES` lines, the last cut with an ellipsis."""
    lines = _wrap(font, text, width)
    if len(lines) > LABEL_LINES:
        lines = lines[:LABEL_LINES - 1] + [_fit_line(font, " ".join(lines[LABEL_LINES - 1:]) + _ELLIPSIS, width)]
    return lines


def sheet(images, labels=None, cols: Optional[int] = None, pad: int = 4, cell: Optional[int] = None,
          background=(255, 255, 255), color=(40, 40, 40), path: Optional[PathLike] = None,
          title: Optional[str] = None) -> Image.Image:
    """A contact sheet: ``images`` in a grid of ``cols`` columns, each with its label underneath.

    ``images``: PIL images, (3, H, W) tensors or arrays, or paths of image files. ``labels``: one
    string per image, or ``None`` for no labels. ``cols`` defaults to a near-square grid. Every cell
    is as large as the largest image (smaller ones are centred), or ``cell`` pixels wide and high
    with each image scaled to fit (up or down: ``cell=256`` enlarges 64 px renders 4x, pixel
    blocks kept sharp). ``pad`` pixels separate cells and frame the sheet. ``title``: text above
    the grid (the model and layer, say), wrapped to the sheet's width; labels wrap to the cell's
    width (two lines at most, then an ellipsis), so that they never overlap. With ``path`` the sheet is written atomically, PNG or PDF
    (or any PIL format) by suffix. Returns the sheet.

    >>> featvis.figures.sheet(result.images, labels=["97", "143"], path="sheet.png")
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    pics = [_as_pil(im).convert("RGB") for im in images]
    if not pics:
        raise ValueError("sheet() needs at least one image")
    if labels is not None and len(labels) != len(pics):
        raise ValueError(f"sheet() got {len(pics)} images but {len(labels)} labels; give one label per image or labels=None")
    if cell is not None:  # enlarge by whole pixels (sharp), shrink smoothly
        pics = [im.resize(_fit(im.size, cell), Image.NEAREST if cell >= max(im.size) and cell % max(im.size) == 0
                          else Image.LANCZOS) for im in pics]
    cw = max(im.width for im in pics) if cell is None else cell
    ch = max(im.height for im in pics) if cell is None else cell
    n = len(pics)
    cols = max(1, min(n, cols or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    font = _label_font(max(10, min(cw // 8, 24))) if labels is not None else None
    # Labels wrap at spaces to the cell's width (at most LABEL_LINES lines, the last cut with an
    # ellipsis): a long label never runs into its neighbour's.
    label_lines = [_label_lines(font, str(t), cw) for t in labels] if font is not None else []
    line_h = font.getbbox("0Ag_")[3] if font is not None else 0
    label_h = (max(map(len, label_lines), default=1) * line_h + pad) if font is not None else 0
    width = cols * (cw + pad) + pad
    title_font = _label_font(max(12, min(width // 30, 28))) if title else None
    # The title wraps to the sheet's width, so a long one (model, layer, preset, settings) is shown whole.
    title_lines = _wrap(title_font, str(title), width - 2 * pad) if title_font is not None else []
    title_line_h = title_font.getbbox("0Ag_")[3] if title_font is not None else 0
    title_h = (len(title_lines) * title_line_h + 2 * pad) if title_font is not None else 0

    out = Image.new("RGB", (width, title_h + rows * (ch + label_h + pad) + pad), background)
    draw = ImageDraw.Draw(out)
    for j, line in enumerate(title_lines):
        draw.text((pad, pad + j * title_line_h), line, fill=color, font=title_font)
    for i, im in enumerate(pics):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cw + pad), title_h + pad + r * (ch + label_h + pad)
        out.paste(im, (x0 + (cw - im.width) // 2, y0 + (ch - im.height) // 2))
        for j, text in enumerate(label_lines[i] if font is not None else []):
            tw = draw.textlength(text, font=font)
            draw.text((x0 + (cw - tw) / 2, y0 + ch + pad // 2 + j * line_h), text, fill=color, font=font)
    if path is not None:
        save_image(out, path)
    return out


def _fit(size, cell: int):
    w, h = size
    s = cell / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))
