"""Low-resolution parameterizations: tensors stretched to the image size, and their sums.

A Laplacian pyramid (Lucid's ``laplacian_pyramid_image``) is a sum of such tensors at 1, 1/2, 1/4,
1/8 of the image size: coarse levels move large areas at once, like the low frequencies of the
Fourier parameterization. Stretched along the batch as well (Lucid's ``lowres_tensor`` over the
batch dimension), a low-resolution tensor is *shared*: images of a batch see the same values, or a
linear blend of a few, which is what aligns the frames of an interpolation figure.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..rng import RandomSource, as_source, derive_seed
from .base import ImageParam, size_hw, batch_size
from .color import from_valid_rgba, to_valid_rgba


class LowResTensor(nn.Module):
    """``n`` low-resolution values (n, C, h, w), stretched to (B, C, H, W) on demand.

    In space: bilinear (half-pixel centres). Along the batch: image i of B takes the linear blend at
    position i / (B - 1) between the n values, so n = 1 is one tensor shared by every image, n = 2
    a blend from the first image to the last, and n = B one tensor per image.
    """

    def __init__(self, n: int, channels: int, h: int, w: int, sd: float = 0.01):
        super().__init__()
        self.sd = float(sd)
        self.values = nn.Parameter(torch.zeros(n, channels, h, w))

    def reset(self, draw) -> None:
        """``draw(shape) -> (n, *shape)`` normal draws on the CPU."""
        with torch.no_grad():
            self.values.copy_(self.sd * draw(self.values.shape[1:]))

    def forward(self, B: int, H: int, W: int) -> torch.Tensor:
        t = self.values  # (n, C, h, w)
        if tuple(t.shape[-2:]) != (H, W):  # upsample the n values before spreading them over B images
            t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
        n = t.shape[0]
        if n == 1:
            return t.expand(B, -1, -1, -1)
        if n == B:
            return t
        pos = torch.linspace(0, n - 1, B, device=t.device) if B > 1 else t.new_zeros(1)
        lo = pos.floor().long().clamp(max=n - 2)
        frac = (pos - lo).view(B, 1, 1, 1)
        return t[lo] * (1 - frac) + t[lo + 1] * frac  # (B, C, H, W)


def shared_generator(rng: RandomSource, tag: int) -> torch.Generator:
    """A CPU generator for tensors shared by all images, seeded from every image's seed and ``tag``
    (so that shared draws do not shift any one image's own stream)."""
    return torch.Generator().manual_seed(derive_seed(*rng.seeds, tag))


class Pyramid(ImageParam):
    """The module :func:`pyramid` returns (see there)."""

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, factors: Sequence[int] = (1, 2, 4, 8),
                 sd: float = 0.01, decorrelate: bool = True, alpha: bool = False):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.decorrelate = batch_size(batch), decorrelate
        self.channels = 4 if alpha else 3
        factors = [int(k) for k in factors]
        if not factors or min(factors) < 1:
            raise ValueError(f"factors must be positive integers (1 = full resolution), got {factors}")
        self.factors = factors
        self.levels = nn.ModuleList(
            LowResTensor(self.batch, self.channels, max(1, self.height // k), max(1, self.width // k), sd)
            for k in factors)
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        for level in self.levels:
            level.reset(rng.normal)

    def set_image(self, images: torch.Tensor) -> None:
        t = from_valid_rgba(images, self.decorrelate)[:, :self.channels]
        finest = min(range(len(self.factors)), key=lambda i: self.factors[i])
        with torch.no_grad():
            for i, level in enumerate(self.levels):
                if i != finest:
                    level.values.zero_()
            v = self.levels[finest].values
            c = t.shape[1]
            v[:, :c] = F.interpolate(t, size=v.shape[-2:], mode="area") if tuple(v.shape[-2:]) != self.size else t

    def forward(self) -> torch.Tensor:
        t = sum(level(self.batch, self.height, self.width) for level in self.levels)
        return to_valid_rgba(t, self.decorrelate)  # (B, 3|4, H, W) in [0, 1]

    def extra_repr(self):
        return f"{super().extra_repr()}, factors={self.factors}"


def pyramid(w: int, h: Optional[int] = None, batch: int = 1, levels: int = 4, sd: float = 0.01,
            decorrelate: bool = True, alpha: bool = False) -> Pyramid:
    """Laplacian-pyramid parameterization (Lucid's ``laplacian_pyramid_image``): the sum of
    ``levels`` tensors at 1, 1/2, 1/4, ... of the image size, each stretched bilinearly to full
    size, then coloured and squashed like :func:`~featvis.param.fourier`.

    >>> result = featvis.render(model, "layer2:5", param=featvis.param.pyramid(128, levels=4))
    """
    return Pyramid(w, h, batch, [2 ** n for n in range(levels)], sd, decorrelate, alpha)


def lowres(w: int, h: Optional[int] = None, batch: int = 1, factor: int = 4, sd: float = 0.01,
           decorrelate: bool = True, alpha: bool = False) -> Pyramid:
    """One tensor at 1/``factor`` of the image size, stretched bilinearly to ``w`` x ``h`` (Lucid's
    ``lowres_tensor`` as an image): smooth images whose detail is limited by construction.

    >>> blobs = featvis.param.lowres(128, factor=8)
    """
    return Pyramid(w, h, batch, [factor], sd, decorrelate, alpha)
