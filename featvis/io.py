"""Images to and from files: PIL conversion, atomic writes (nothing half-written on disk), one image.

The lowest room of the package (with :mod:`featvis.errors`, :mod:`featvis.rng`): anything may
import it, it imports no other featvis module. Drawing (contact sheets, labelled figures) is
:mod:`featvis.figures`.
"""
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
    """Call ``write(tmp_path)`` then rename the temporary file to ``path`` (fsynced).

    The temporary file sits in the same folder (so the rename is atomic) and is removed if
    ``write`` fails: a reader sees the old file or the whole new one, never a partial one. Its
    name follows :func:`featvis.jobs.folder.atomic_write`'s (``.NAME.fvtmp-io-XXXX``); that one, for
    render folders, adds their writer tags and one-line errors. (Self-contained: featvis.jobs.folder
    imports this module, so this one must not import it back.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.fvtmp-io-", dir=path.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it 0600; give it the mode open() would
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
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


#: Drawing that lived here in featvis 0.1 (``featvis.io.figure``...), now in :mod:`featvis.figures`;
#: still reachable by the old names (by name, so that this lowest module imports no higher one).
_MOVED = {"figure": "featvis.figures.grid", "sheet": "featvis.figures.grid", "figure_layout": "featvis.figures.grid",
          "save_figure": "featvis.figures.grid", "load_font": "featvis.figures.grid", "Layout": "featvis.figures.grid"}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
