"""One free value per pixel and colour channel."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, batch_size, color_channels, size_hw
from .color import from_valid_rgba, to_valid_rgba


class Pixel(ImageParam):
    """The module :func:`pixel` returns (see there)."""

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01, decorrelate: bool = False,
                 channels: int = 3):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.sd, self.decorrelate = batch_size(batch), float(sd), decorrelate
        self.channels = color_channels(channels)
        self.pixels = nn.Parameter(torch.empty(self.batch, self.channels, self.height, self.width))
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        with torch.no_grad():
            self.pixels.copy_(self.sd * rng.normal((self.channels, self.height, self.width)))

    def set_image(self, images: torch.Tensor) -> None:
        with torch.no_grad():
            self.pixels.copy_(from_valid_rgba(images[:, :self.channels], self.decorrelate, self.channels))

    def forward(self) -> torch.Tensor:
        return to_valid_rgba(self.pixels, self.decorrelate, self.channels)  # (B, C, H, W) in [0, 1]


def pixel(w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01, decorrelate: bool = False,
          channels: int = 3) -> Pixel:
    """Pixel parameterization: an RGB value per pixel (normal, std ``sd``), squashed by a sigmoid.

    ``decorrelate=True`` optimizes in Lucid's decorrelated colour basis instead of plain RGB.
    ``channels``: the model's input channels (1 for grayscale; no decorrelation unless 3).
    """
    return Pixel(w, h, batch, sd, decorrelate, channels)
