"""Images to files: PIL conversion and atomic PNG writing (nothing half-written on disk)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Union

import numpy as np
import torch
from PIL import Image

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
