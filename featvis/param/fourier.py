"""Fourier parameterization: the image's spectrum, scaled by 1/f, in a decorrelated colour basis.

Optimizing the spectrum with 1/f^decay scaling whitens the gradient (natural images have most of
their energy at low frequencies), which is what makes visualizations less noisy than pixel
optimization at the same step count (Olah et al., "Feature Visualization", Distill 2017).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, size_hw
from .color import to_valid_rgb


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """(h, w//2 + 1) factors 1 / max(f, 1/max(h, w))**decay * sqrt(h*w) for ``torch.fft.irfft2``.

    The floor on f and the sqrt(h*w) factor (which makes the transform about unitary, so pixel-like
    learning rates work) follow Lucid's ``fft_image``.
    """
    fy = torch.fft.fftfreq(h).view(-1, 1)  # (h, 1) cycles per pixel
    fx = torch.fft.rfftfreq(w).view(1, -1)  # (1, w//2 + 1)
    freqs = (fx * fx + fy * fy).sqrt()
    return (h * w) ** 0.5 / freqs.clamp(min=1.0 / max(h, w)) ** decay_power


class Fourier(ImageParam):
    # Lucid divides the inverse FFT by 4 (lucid/optvis/param/spatial.py, fft_image).
    OUTPUT_SCALE = 1 / 4.0

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01,
                 decay_power: float = 1.0, decorrelate: bool = True):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.sd, self.decorrelate = int(batch), float(sd), decorrelate
        self.register_buffer("scale", spectrum_scale(self.height, self.width, decay_power), persistent=False)
        # (B, 3, H, W//2 + 1, 2): real and imaginary parts
        self.spectrum = nn.Parameter(torch.empty(self.batch, 3, *self.scale.shape, 2))
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        with torch.no_grad():
            self.spectrum.copy_(self.sd * rng.normal(self.spectrum.shape[1:]))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale  # (B, 3, H, W//2 + 1) complex
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="backward")
        return to_valid_rgb(image * self.OUTPUT_SCALE, self.decorrelate)  # (B, 3, H, W) in [0, 1]


def fourier(w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01,
            decay_power: float = 1.0, decorrelate: bool = True) -> Fourier:
    """Fourier parameterization (Lucid's default image): ``batch`` images of ``w`` x ``h`` pixels.

    The spectrum starts as normal noise with std ``sd``, is scaled by 1/f**``decay_power``, turned
    into an image by an inverse real FFT, mapped through Lucid's colour decorrelation matrix (unless
    ``decorrelate=False``) and squashed into [0, 1] by a sigmoid. Any size works, square or not.
    """
    return Fourier(w, h, batch, sd, decay_power, decorrelate)
