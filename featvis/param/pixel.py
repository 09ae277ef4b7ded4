"""One free value per pixel and colour channel."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, size_hw, batch_size
from .color import from_valid_rgba, to_valid_rgb


class Pixel(ImageParam):
    """The module :func:`pixel` returns (see there)."""

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01, decorrelate: bool = False):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.sd, self.decorrelate = batch_size(batch), float(sd), decorrelate
        self.pixels = nn.Parameter(torch.empty(self.batch, 3, self.height, self.width))
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        with torch.no_grad():
            self.pixels.copy_(self.sd * rng.normal((3, self.height, self.width)))

    def set_image(self, images: torch.Tensor) -> None:
        with torch.no_grad():
            self.pixels.copy_(from_valid_rgba(images[:, :3], self.decorrelate))

    def forward(self) -> torch.Tensor:
        return to_valid_rgb(self.pixels, self.decorrelate)  # (B, 3, H, W) in [0, 1]


def pixel(w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01, decorrelate: bool = False) -> Pixel:
    """Pixel parameterization: an RGB value per pixel (normal, std ``sd``), squashed by a sigmoid.

    ``decorrelate=True`` optimizes in Lucid's decorrelated colour basis instead of plain RGB.
    """
    return Pixel(w, h, batch, sd, decorrelate)
