"""Images to files: PIL conversion, atomic PNG writing (nothing half-written on disk), contact sheets."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

PathLike = Union[str, os.PathLike]


def to_pil(images: torch.Tensor) -> List[Image.Image]:
    """(B, 3|4, H, W) floats in [0, 1] -> a list of RGB (or RGBA) PIL images."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] not in (1, 3, 4):
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    arr = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[images.shape[1]]
    return [Image.fromarray(a[..., 0] if mode == "L" else a, mode) for a in arr]


def atomic_write(path: PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    The temporary file sits in the same folder (so the rename is atomic) and is removed if
    ``write`` fails: a reader sees the old file or the whole new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_image(image: Union[Image.Image, torch.Tensor, np.ndarray], path: PathLike, **pil_kwargs) -> Path:
    """Write one image atomically; the format follows the suffix (``.png``, ``.jpg``, ``.pdf``...)."""
    if isinstance(image, torch.Tensor):
        (image,) = to_pil(image if image.dim() == 4 else image[None])
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its suffix; use .png, .jpg or .pdf")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **pil_kwargs))


# --- contact sheets ----------------------------------------------------------------------------

def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        return to_pil(image)[0]
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    with Image.open(image) as im:  # a path
        return im.convert("RGB")


def _label_font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def sheet(images, labels=None, cols: Optional[int] = None, pad: int = 4, cell: Optional[int] = None,
          background=(255, 255, 255), color=(40, 40, 40), path: Optional[PathLike] = None) -> Image.Image:
    """A contact sheet: ``images`` in a grid of ``cols`` columns, each with its label underneath.

    ``images``: PIL images, (3, H, W) tensors or arrays, or paths of image files. ``labels``: one
    string per image, or ``None`` for no labels. ``cols`` defaults to a near-square grid. Every cell
    is as large as the largest image (smaller ones are centred), or ``cell`` pixels wide and high
    with each image scaled to fit. ``pad`` pixels separate cells and frame the sheet. With ``path``
    the sheet is written atomically, PNG or PDF (or any PIL format) by suffix. Returns the sheet.

    >>> featvis.io.sheet(result.images, labels=["97", "143"], path="sheet.png")
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    pics = [_as_pil(im).convert("RGB") for im in images]
    if not pics:
        raise ValueError("sheet() needs at least one image")
    if labels is not None and len(labels) != len(pics):
        raise ValueError(f"sheet() got {len(pics)} images but {len(labels)} labels; give one label per image or labels=None")
    if cell is not None:
        pics = [im.resize(_fit(im.size, cell), Image.LANCZOS) for im in pics]
    cw = max(im.width for im in pics) if cell is None else cell
    ch = max(im.height for im in pics) if cell is None else cell
    n = len(pics)
    cols = max(1, min(n, cols or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    font = _label_font(max(10, min(cw // 8, 24))) if labels is not None else None
    label_h = (font.getbbox("0Ag_")[3] + pad) if font is not None else 0

    out = Image.new("RGB", (cols * (cw + pad) + pad, rows * (ch + label_h + pad) + pad), background)
    draw = ImageDraw.Draw(out)
    for i, im in enumerate(pics):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cw + pad), pad + r * (ch + label_h + pad)
        out.paste(im, (x0 + (cw - im.width) // 2, y0 + (ch - im.height) // 2))
        if font is not None:
            text = str(labels[i])
            tw = draw.textlength(text, font=font)
            draw.text((x0 + (cw - tw) / 2, y0 + ch + pad // 2), text, fill=color, font=font)
    if path is not None:
        save_image(out, path)
    return out


def _fit(size, cell: int):
    w, h = size
    s = cell / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))
