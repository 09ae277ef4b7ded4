"""``featvis.show(x)``: x in the notebook's output in Jupyter, or in a file anywhere else.

The same line works in a notebook and in a script: in a Jupyter kernel it displays ``x`` (the
object's own rich display: a :class:`~featvis.Result` as its images with units and values, a
render folder as its summary and sheets, a circuit figure with its table of inputs); elsewhere it
writes ``x`` to a file (``path``, or the next free ``featvis-show-N.png`` in the current folder)
and says where. ``path`` in a notebook writes the file as well.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ..display import display_px, html_grid, in_notebook, pil, png_bytes
from ..errors import UsageError
from ..io import PathLike, atomic_write, save_image

#: Image files ``show`` opens by path (anything PIL reads, but these are what featvis writes and users have).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
#: Where ``show`` writes outside a notebook when no ``path`` is given: the first free N.
DEFAULT_NAME = "featvis-show-{}.png"


class Images:
    """A list of images with labels and captions that displays itself (what ``show`` makes of
    tensors, lists of images and paths)."""

    def __init__(self, images: Sequence, labels: Optional[Sequence[str]] = None,
                 captions: Optional[Sequence[str]] = None, title: Optional[str] = None, cols: Optional[int] = None):
        self.images = list(images)
        if not self.images:
            raise UsageError("featvis.show got no images; give a Result, an image, a tensor (B, 3, H, W) or a list")
        for what, texts in (("labels", labels), ("captions", captions)):
            if texts is not None and len(texts) != len(self.images):
                raise UsageError(f"featvis.show got {len(self.images)} images but {len(texts)} {what}; "
                                 f"give one per image or {what}=None")
        self.labels, self.captions, self.title, self.cols = labels, captions, title, cols

    def _repr_html_(self) -> str:
        return html_grid(self.images, self.labels, self.captions, self.title)

    def image(self):
        """The images as one labelled figure (:func:`featvis.figures.figure`): what a file gets."""
        from .grid import figure
        pics = [pil(im) for im in self.images]
        n = len(pics)
        cols = max(1, min(n, self.cols or (n if n <= 8 else math.ceil(math.sqrt(n)))))  # one row up to 8
        rows = [pics[i:i + cols] for i in range(0, n, cols)]
        texts = None
        if self.labels is not None or self.captions is not None:
            texts = [": ".join(t for t in ((self.labels or [""] * n)[i], (self.captions or [""] * n)[i]) if t)
                     for i in range(n)]
            texts = [texts[i:i + cols] for i in range(0, n, cols)]
        side = max(display_px(max(max(p.size) for p in pics)), 128)  # room for a caption line
        image = figure(rows, captions=texts, cell=side)
        return image if not self.title else _titled(image, self.title)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.image())


def _titled(image, title: str):
    """``image`` with a line of text above it (cut with an ellipsis to the image's width)."""
    from PIL import Image, ImageDraw

    from .grid import FONT_SIZE, _fit_line, _line_height, load_font
    font, pad = load_font(FONT_SIZE), 8
    height = _line_height(font) + pad
    out = Image.new("RGB", (image.width, image.height + height), "white")
    out.paste(image.convert("RGB"), (0, height))
    ImageDraw.Draw(out).text((pad, pad), _fit_line(font, title, image.width - 2 * pad), fill=(0, 0, 0), font=font)
    return out


def _from_path(path: Path):
    if path.is_dir():
        raise UsageError(f"featvis.show({str(path)!r}): a folder; for a render folder give "
                         f"featvis.jobs.folder.RenderFolder({str(path)!r}), for images a list of their paths")
    if not path.is_file():
        raise UsageError(f"featvis.show({str(path)!r}): no such file; give an image file ({', '.join(IMAGE_SUFFIXES)})")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"featvis.show({str(path)!r}): not an image file; expected one of {', '.join(IMAGE_SUFFIXES)}")
    return pil(path)


def displayable(obj, labels=None, captions=None, title: Optional[str] = None, cols: Optional[int] = None):
    """What ``show`` displays for ``obj``: the object itself where it displays itself (a Result,
    objective, render folder, circuit figure, PIL image), else :class:`Images` of it."""
    import torch
    from PIL import Image

    if isinstance(obj, (str, Path)):
        obj = _from_path(Path(obj))
    if isinstance(obj, Image.Image):
        return obj if labels is None and captions is None and title is None else Images([obj], labels, captions, title)
    if isinstance(obj, torch.Tensor):
        if obj.dim() == 3:
            obj = obj[None]
        if obj.dim() != 4 or obj.shape[1] not in (1, 3, 4):
            raise UsageError(f"featvis.show got a tensor of shape {tuple(obj.shape)}; expected images (B, 3, H, W) "
                             "or (3, H, W) in [0, 1]")
        return Images(list(obj), labels, captions, title, cols)
    if hasattr(obj, "_repr_html_") or hasattr(obj, "_repr_png_"):
        if labels is not None or captions is not None:
            images = getattr(obj, "images", None)
            if images is not None:
                return Images(list(images), labels, captions, title, cols)
        return obj
    if isinstance(obj, (list, tuple)):
        return Images([_from_path(Path(x)) if isinstance(x, (str, Path)) else x for x in obj], labels, captions,
                      title, cols)
    raise UsageError(f"featvis.show cannot show a {type(obj).__name__}; give a Result, a RenderFolder, an image, "
                     "a tensor (B, 3, H, W), a list of images or an image file's path")


def _as_image(thing):
    """A PIL image of a displayable (for PNG/JPEG/PDF files)."""
    import io

    from PIL import Image

    if isinstance(thing, Image.Image):
        return thing
    if isinstance(thing, Images):
        return thing.image()
    if hasattr(thing, "images") and hasattr(thing, "values") and hasattr(thing, "captions"):  # a Result
        labels = [lab or f"image {i}" for i, lab in enumerate(getattr(thing, "labels", None) or [""] * len(thing.images))]
        return Images(list(thing.images), labels, thing.captions(), getattr(thing, "objective", None)).image()
    data = thing._repr_png_() if hasattr(thing, "_repr_png_") else None
    if data is None:
        raise UsageError(f"a {type(thing).__name__} has no picture to save; save it as .html instead")
    with Image.open(io.BytesIO(data)) as im:
        return im.copy()


def _html_page(thing) -> str:
    body = thing._repr_html_() if hasattr(thing, "_repr_html_") else None
    if body is None:
        from ..display import data_uri
        image = _as_image(thing)
        body = f'<img src="{data_uri(image)}" width="{image.width}" height="{image.height}" alt="featvis.show">'
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><title>featvis</title></head><body>\n{body}\n</body></html>\n'


def save(thing, path: PathLike) -> Path:
    """Write a displayable to ``path``: ``.html`` its rich display as a page, an image suffix
    (``.png``, ``.jpg``, ``.pdf``...) its picture; atomically."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        text = _html_page(thing)
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return save_image(_as_image(thing), path)


def _free_name(suffix: str = ".png", folder: Path = Path(".")) -> Path:
    n = 1  # one numbering for pictures and pages: featvis-show-2.html follows featvis-show-1.png
    while any(folder.glob(Path(DEFAULT_NAME.format(n)).with_suffix(".*").name)):
        n += 1
    return (folder / DEFAULT_NAME.format(n)).with_suffix(suffix)


def _has_picture(thing) -> bool:
    from PIL import Image
    return isinstance(thing, (Image.Image, Images)) or hasattr(thing, "captions") or \
        (hasattr(thing, "_repr_png_") and thing._repr_png_() is not None)


def show(obj, path: Optional[PathLike] = None, *, labels: Optional[List[str]] = None,
         captions: Optional[List[str]] = None, title: Optional[str] = None, cols: Optional[int] = None,
         notebook: Optional[bool] = None) -> Optional[Path]:
    """Show ``obj`` in the notebook, or write it to a file outside one.

    ``obj``: a :class:`~featvis.Result`, an objective, a :class:`~featvis.jobs.folder.RenderFolder`,
    a circuit figure, a PIL image, a (B, 3, H, W) or (3, H, W) tensor in [0, 1], a list of images,
    or an image file's path. ``labels`` / ``captions``: one string per image, under it; ``title``:
    a line above; ``cols``: columns of the file's grid.
    ``path``: write there too (``.png``, ``.jpg``, ``.pdf``: the picture; ``.html``: the notebook's
    display as a page); outside a notebook, without ``path``, the next free ``featvis-show-N.png``
    in the current folder (``.html`` for what has no picture, an objective). ``notebook``: force one behaviour (default: whether this runs in a
    Jupyter kernel). Returns the path written, or ``None``.

    >>> featvis.show(featvis.render(model, "curves:2", steps=64))   # in Jupyter: the image, its unit and value
    >>> featvis.show(result, "curves_2.png")                        # a script: the labelled picture
    """
    thing = displayable(obj, labels, captions, title, cols)
    here = in_notebook() if notebook is None else bool(notebook)
    written = None
    if path is not None or not here:
        written = save(thing, path if path is not None else _free_name(".png" if _has_picture(thing) else ".html"))
    if here:
        from IPython.display import display
        display(thing)
    elif written is not None:
        print(f"featvis.show: wrote {written}", file=sys.stderr)
    return written


__all__ = ["show", "displayable", "save", "Images", "IMAGE_SUFFIXES", "DEFAULT_NAME"]
