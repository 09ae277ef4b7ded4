"""Figures through matplotlib: vector text, real colour bars, the user's rcParams and fonts.

Papers want figures made with the tools their authors already use: a matplotlib ``Figure`` that
they can still adjust (fonts, sizes, titles) before saving, whose text stays text in a PDF or SVG.
The functions here return such a ``Figure`` and never call ``plt.show``; :func:`save` writes it
as PNG, PDF or SVG atomically. Nothing here changes the user's rcParams: a figure is drawn under
them (font family, sizes, ``savefig.dpi``), only the text type is forced to be real text
(``pdf.fonttype`` 42 and ``svg.fonttype`` "none" while saving) so that a PDF's or SVG's labels can
be selected, searched and edited.

The fast Pillow path (:mod:`featvis.figures.grid`) stays for contact sheets of thousands of units.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from ..errors import UsageError

if TYPE_CHECKING:  # matplotlib is an optional extra, imported where it is used
    from matplotlib.figure import Figure

#: The formats :func:`save` writes (matplotlib's backends for them need nothing beyond matplotlib).
FORMATS = (".png", ".pdf", ".svg")
INSTALL = "pip install featvis[figures]"


def pyplot_free():
    """``matplotlib`` with a figure class usable without pyplot (no GUI backend, no global state),
    or a :class:`UsageError` naming the extra to install."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UsageError(f"this figure is drawn with matplotlib, which is not installed; {INSTALL}") from None
    return matplotlib


def new_figure(size_in: Tuple[float, float], **kwargs) -> "Figure":
    """A ``Figure`` of ``size_in`` inches (width, height), made without pyplot (so no window opens
    and nothing is kept in pyplot's list of figures); rcParams apply as usual."""
    pyplot_free()
    from matplotlib.figure import Figure
    return Figure(figsize=size_in, **kwargs)


def check_out(out, formats: Sequence[str] = FORMATS, what: str = "--out") -> Path:
    """``out`` as a Path whose suffix is one of ``formats``; a :class:`UsageError` otherwise."""
    p = Path(out)
    if p.suffix.lower() not in formats:
        names = ", ".join(formats)
        raise UsageError(f"{what} {out}: the figure is written as {names}; end the name with one of them")
    if p.exists() and p.is_dir():
        raise UsageError(f"{what} {out}: is a folder; give a file name")
    return p


def save(fig: "Figure", out, dpi: Optional[float] = None) -> Path:
    """Write ``fig`` to ``out`` (.png, .pdf or .svg, by its suffix) through a temporary file and a
    rename. Text stays text: TrueType fonts embedded in PDFs (``pdf.fonttype`` 42), SVG text as
    ``<text>`` (``svg.fonttype`` "none"); the user's other rcParams are left as they are.
    ``dpi``: for the PNG and the images inside a PDF/SVG (default: rcParams ``savefig.dpi``)."""
    matplotlib = pyplot_free()
    from ..io import atomic_write

    out = check_out(out)
    fmt = out.suffix.lower()[1:]
    kwargs = {"format": fmt, "bbox_inches": "tight"}
    if dpi is not None:
        kwargs["dpi"] = dpi
    if fmt == "svg":  # reproducible bytes: no date, no random ids
        kwargs["metadata"] = {"Date": None}
    elif fmt == "pdf":
        kwargs["metadata"] = {"CreationDate": None}
    with matplotlib.rc_context({"pdf.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "featvis"}):
        def write(tmp):
            with open(tmp, "wb") as f:
                fig.savefig(f, **kwargs)
        return atomic_write(out, write)


def as_array(image):
    """(H, W, 3) or (H, W, 4) uint8 array from a PIL image, a (3|4, H, W) tensor in [0, 1], an array
    or a path."""
    import numpy as np

    from .grid import _as_image
    if isinstance(image, np.ndarray):
        return image
    im = _as_image(image)
    return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB"))


def image_axes(ax, image, title: Optional[str] = None, frame=None, **title_kwargs) -> None:
    """``image`` shown in ``ax`` at its aspect, without ticks; ``frame``: a colour for its border."""
    ax.imshow(as_array(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(2.5)
    if title:
        ax.set_title(title, **title_kwargs)


def grid_figure(rows, row_titles: Optional[Sequence[Optional[str]]] = None,
                col_titles: Optional[Sequence[Optional[str]]] = None,
                captions: Optional[Sequence[Sequence[Optional[str]]]] = None, title: Optional[str] = None,
                cell_in: float = 1.2) -> "Figure":
    """The labelled grid of :func:`featvis.figures.grid.figure` as a matplotlib ``Figure``: images
    (or None for an empty cell) in rows, optional row and column titles, a caption under each
    image, a title. Text is real text in a PDF/SVG (see :func:`save`)."""
    grid: List[List[object]] = [list(r) for r in rows]
    n_rows, n_cols = len(grid), max((len(r) for r in grid), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("grid_figure needs at least one image")
    fig = new_figure((cell_in * n_cols + (0.9 if row_titles else 0.1), cell_in * n_rows * 1.15 + (0.4 if title else 0.1)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            item = grid[r][c] if c < len(grid[r]) else None
            if item is None:
                ax.axis("off")
                continue
            image_axes(ax, item)
            if captions and r < len(captions) and c < len(captions[r]) and captions[r][c]:
                ax.set_xlabel(str(captions[r][c]), fontsize="small")
            if col_titles and r == 0 and c < len(col_titles) and col_titles[c]:
                ax.set_title(str(col_titles[c]), fontsize="small")
        if row_titles and r < len(row_titles) and row_titles[r]:
            axes[r][0].axis("on")
            axes[r][0].set_xticks([])
            axes[r][0].set_yticks([])
            axes[r][0].set_ylabel(str(row_titles[r]), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def sheet_figure(images, labels: Optional[Sequence[str]] = None, cols: Optional[int] = None,
                 title: Optional[str] = None, cell_in: float = 0.9) -> "Figure":
    """A contact sheet as a matplotlib ``Figure``: ``images`` in rows of ``cols`` (near-square by
    default), each labelled under it. For PDF/SVG sheets whose labels must be text; the PNG
    sheets of thousands of units stay on :func:`featvis.figures.grid.sheet` (Pillow, fast)."""
    import math
    images = list(images)
    if not images:
        raise ValueError("sheet_figure needs at least one image")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = [images[i:i + cols] for i in range(0, len(images), cols)]
    captions = None
    if labels is not None:
        labels = list(labels)
        captions = [labels[i:i + cols] for i in range(0, len(labels), cols)]
    return grid_figure(rows, captions=captions, title=title, cell_in=cell_in)
