"""The contract every image parameterization follows."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..rng import RandomSource


def size_hw(w: int, h: Optional[int]) -> Tuple[int, int]:
    """(H, W) from a width and an optional height (square by default), checked."""
    h = w if h is None else h
    if int(w) != w or int(h) != h or w < 1 or h < 1:
        raise ValueError(f"image size must be positive integers, got w={w}, h={h}")
    return int(h), int(w)


def color_channels(channels) -> int:
    """``channels`` checked: the image channels a model takes (3 for RGB, 1 for grayscale)."""
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels={channels!r}: expected the model's input channels (3 for RGB, 1 for grayscale)")
    return int(channels)


def batch_size(batch) -> int:
    """``batch`` checked: a whole number of images, at least 1."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch={batch!r}: expected a whole number of images, at least 1")
    return int(batch)


class ImageParam(nn.Module):
    """An ``nn.Module`` whose ``forward()`` returns the images (B, 3, H, W) in [0, 1].

    Its trainable tensors are its parameters; ``.to(device)`` is its only device handling.
    ``reset(rng)`` re-draws the initial values from a :class:`~featvis.rng.RandomSource` (one
    stream per image), which is how ``render(seed=...)`` makes a run reproducible.
    """

    batch: int
    height: int
    width: int
    #: The channels of ``forward()``'s images: 3 (RGB) or 4 (RGBA: ``render`` composites the image
    #: over a background before the model); for a model of other input channels, its count (1 for
    #: grayscale), plus one with alpha.
    channels: int = 3
    #: Whether the last channel is transparency.
    alpha: bool = False
    #: The learning rate ``render`` uses when none is given; ``None`` means render's own default.
    default_lr: Optional[float] = None

    def reset(self, rng: RandomSource) -> None:
        raise NotImplementedError

    def set_image(self, images: torch.Tensor) -> None:
        """Set the parameters so that ``forward()`` returns ``images`` (B or 1, 3|4, H, W) in [0, 1]
        (as closely as the parameterization allows). ``render(init=...)`` calls it."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot start from a given image; use param.fourier, param.pixel "
            "or param.pyramid for render(init=...)")

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width

    def extra_repr(self):
        return f"batch={self.batch}, h={self.height}, w={self.width}"


def image_tensor(image) -> torch.Tensor:
    """A float (B, C, H, W) tensor in [0, 1] from a PIL image, a NumPy array (H, W, C) or a tensor
    ((C, H, W) or (B, C, H, W)); uint8 values are divided by 255.

    >>> image_tensor(PIL.Image.open("dog.png")).shape    # (1, 3, H, W)
    """
    try:
        from PIL import Image
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None].repeat(3, -1)
        if image.ndim != 3:
            raise ValueError(f"expected an (H, W, C) array for an image, got shape {image.shape}")
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a copy: PIL arrays are read-only
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected an image as a PIL image, NumPy array or tensor, got {type(image).__name__}")
    if image.dtype == torch.uint8:
        image = image.float() / 255
    image = image.float()
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] not in (3, 4):
        raise ValueError(f"expected an image tensor (3|4, H, W) or (B, 3|4, H, W), got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("the image has NaN or infinite values; give values in [0, 1] (or uint8 0..255)")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"image values must lie in [0, 1] (or be uint8 0..255), got {image.min():.3g}..{image.max():.3g}")
    return image


def fit_images(images: torch.Tensor, param: ImageParam) -> torch.Tensor:
    """``images`` resized (bilinear, antialiased) to the param's size and repeated to its batch.

    >>> param.set_image(fit_images(image_tensor(photo), param))    # what render(init=photo) does
    """
    if getattr(param, "channels", 3) == 1 and images.shape[1] in (3, 4):  # a photo for a grayscale param
        images = images[:, :3].mean(1, keepdim=True)
    if tuple(images.shape[-2:]) != param.size:
        images = F.interpolate(images, size=param.size, mode="bilinear", align_corners=False, antialias=True)
    if images.shape[0] == 1 and param.batch > 1:
        images = images.expand(param.batch, -1, -1, -1)
    if images.shape[0] != param.batch:
        raise ValueError(f"{images.shape[0]} images were given for a param with batch={param.batch}; "
                         "give one image (shared by all) or one per image")
    return images
