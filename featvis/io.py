"""Images to and from files: PIL conversion, atomic writes (nothing half-written on disk), one image,
and the one bounded image loader (:func:`load_image`) every command that decodes an image uses.

The lowest room of the package (with :mod:`featvis.errors`, :mod:`featvis.rng`): anything may
import it, it imports no other featvis module. Drawing (contact sheets, labelled figures) is
:mod:`featvis.figures`.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, List, Optional, Union

import numpy as np
import torch
from PIL import Image

from .errors import UsageError, one_line

PathLike = Union[str, os.PathLike]

#: :func:`load_image`'s bounds. 64 MP: a 9000 x 7000 photo still loads, and the decoded RGB is at
#: most ~200 MB (a 40-byte PNG can claim 2^31 x 2^31 pixels; PIL's own guard only warns below 179 MP).
MAX_PIXELS = 64_000_000
#: Longest side over shortest side. A 1 x 20000 strip is 157 bytes as a PNG, but resized so that its
#: short side is 224 px (as topk does) it becomes 224 x 4.5 million; panoramas stay well below 32:1.
MAX_ASPECT = 32.0
#: The largest image file read (bytes); nothing we read or write comes close.
MAX_IMAGE_BYTES = 512 << 20


class ImageError(UsageError):
    """An image file that cannot be read within bounds; the message names the file and the fix
    (a :class:`~featvis.errors.UsageError`: the CLI prints it as one line, exit 2)."""


def _open_regular(path: PathLike, max_bytes: int, follow: bool = True) -> BinaryIO:
    """``path`` opened for reading, refused unless it is a regular file of at most ``max_bytes``
    (checked on the open descriptor: a FIFO or device in its place neither blocks nor is read)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{path} is not a regular file (a FIFO, device or folder); featvis reads images only "
                             "from plain files: replace it with the image file")
        if st.st_size > max_bytes:
            raise ImageError(f"{path} is {st.st_size} bytes, more than the {max_bytes >> 20} MB an image may have; "
                             "use a smaller image")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_image(source: Union[PathLike, BinaryIO], max_pixels: int = MAX_PIXELS, max_aspect: float = MAX_ASPECT,
               max_bytes: int = MAX_IMAGE_BYTES, name: Optional[str] = None) -> Image.Image:
    """Decode one image file, bounded: its size and aspect ratio are read from the header and
    checked (``max_pixels``, ``max_aspect``) before any pixel is decoded; a path must be a regular
    file of at most ``max_bytes``. Returns the loaded PIL image (the file is closed), in the file's
    own mode. Anything else (missing, truncated, not an image, a FIFO, too large) raises
    :class:`ImageError` naming the file (``name``, else the path). ``source``: a path, or a binary
    file already opened (e.g. by :meth:`featvis.jobs.folder.RenderFolder.open_read`)."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "image"))
    try:
        f = _open_regular(source, max_bytes) if isinstance(source, (str, os.PathLike)) else source
    except ImageError as e:
        raise ImageError(str(e).replace(str(source), label, 1)) from None
    except OSError as e:
        raise ImageError(f"cannot read {label} ({e.strerror or e})") from None
    with f:
        try:
            im = Image.open(f)  # reads the header only
            w, h = im.size
            if w < 1 or h < 1 or w * h > max_pixels:
                raise ImageError(f"{label} is {w} x {h} px, more than the {max_pixels / 1e6:g} million pixels "
                                 "an image may have; use a smaller image")
            if max(w, h) > max_aspect * min(w, h):
                raise ImageError(f"{label} is {w} x {h} px, longer than {max_aspect:g}:1; crop it to a less "
                                 "extreme shape")
            im.load()  # every pixel is in memory now: the image outlives the file
            return im
        except ImageError:
            raise
        except Image.DecompressionBombError as e:  # PIL's own guard, in its header check
            raise ImageError(f"{label} claims more than the {max_pixels / 1e6:g} million pixels an image may have "
                             f"({one_line(e, 80)}); use a smaller image") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{label} is not a readable image ({one_line(e)}); it may be truncated or damaged: "
                             "replace it") from None


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
    return load_image(image).convert("RGB")  # a path


#: Drawing that lived here in featvis 0.1 (``featvis.io.figure``...), now in :mod:`featvis.figures`;
#: still reachable by the old names (by name, so that this lowest module imports no higher one).
_MOVED = {"figure": "featvis.figures.grid", "sheet": "featvis.figures.grid", "figure_layout": "featvis.figures.grid",
          "save_figure": "featvis.figures.grid", "load_font": "featvis.figures.grid", "Layout": "featvis.figures.grid"}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
