"""Fourier parameterization: the image's spectrum, scaled by 1/f, in a decorrelated colour basis.

Optimizing the spectrum with 1/f^decay scaling whitens the gradient (natural images have most of
their energy at low frequencies), which is what makes visualizations less noisy than pixel
optimization at the same step count (Olah et al., "Feature Visualization", Distill 2017).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, batch_size, color_channels, size_hw
from .color import from_valid_rgba, to_valid_rgba
from .lowres import LowResTensor, shared_generator

#: ``fourier(shared=True)``: the shared low-resolution terms of Lucid's neuron-interpolation
#: notebook, as (values along the batch, downscale factor): one tensor for all images at 1/2, 1/4,
#: 1/8 and 1/16 of the size, and a two-point blend across the batch at 1/8 and 1/16.
LUCID_SHARED = ((1, 2), (1, 4), (1, 8), (2, 8), (1, 16), (2, 16))
Shared = Union[None, bool, Sequence[Tuple[int, int]]]


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
    """The module :func:`fourier` returns (see there)."""

    # Lucid divides the inverse FFT by 4 (lucid/optvis/param/spatial.py, fft_image).
    OUTPUT_SCALE = 1 / 4.0

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01,
                 decay_power: float = 1.0, decorrelate: bool = True, alpha: bool = False,
                 shared: Shared = None, channels: int = 3):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.sd, self.decorrelate = batch_size(batch), float(sd), decorrelate
        self.colors, self.alpha = color_channels(channels), bool(alpha)
        self.channels = self.colors + self.alpha
        self.register_buffer("scale", spectrum_scale(self.height, self.width, decay_power), persistent=False)
        # (B, C, H, W//2 + 1, 2): real and imaginary parts
        self.spectrum = nn.Parameter(torch.empty(self.batch, self.channels, *self.scale.shape, 2))
        self.shared = nn.ModuleList(
            LowResTensor(n, self.channels, max(1, self.height // k), max(1, self.width // k), sd)
            for n, k in _shared_terms(shared))
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        with torch.no_grad():
            self.spectrum.copy_(self.sd * rng.normal(self.spectrum.shape[1:]))
        if len(self.shared):
            g = shared_generator(rng, 0)
            for term in self.shared:
                term.reset(lambda shape, n=term.values.shape[0]: torch.randn(n, *shape, generator=g))

    def set_image(self, images: torch.Tensor) -> None:
        t = from_valid_rgba(images, self.decorrelate, self.colors) / self.OUTPUT_SCALE  # (B, C', H, W)
        spectrum = torch.fft.rfft2(t, norm="backward") / self.scale  # inverse of forward's irfft2
        with torch.no_grad():
            for term in self.shared:
                term.values.zero_()
            self.spectrum[:, :t.shape[1]] = torch.view_as_real(spectrum).to(self.spectrum.dtype)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale  # (B, C, H, W//2 + 1) complex
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="backward") * self.OUTPUT_SCALE
        for term in self.shared:
            image = image + term(self.batch, self.height, self.width)
        return to_valid_rgba(image, self.decorrelate, self.colors)  # (B, C, H, W) in [0, 1]


def _shared_terms(shared: Shared):
    if shared is None or shared is False:
        return []
    if shared is True:
        return list(LUCID_SHARED)
    try:
        terms = [(int(n), int(k)) for n, k in shared]
    except (TypeError, ValueError):
        raise ValueError(f"shared={shared!r}: expected True or a list of (values along the batch, "
                         "downscale factor) pairs, e.g. [(1, 4), (2, 8)]") from None
    bad = [t for t in terms if t[0] < 1 or t[1] < 1]
    if bad:
        raise ValueError(f"shared terms need positive counts and factors, got {bad[0]}")
    return terms


def fourier(w: int, h: Optional[int] = None, batch: int = 1, sd: float = 0.01,
            decay_power: float = 1.0, decorrelate: bool = True, alpha: bool = False,
            shared: Shared = None, channels: int = 3) -> Fourier:
    """Fourier parameterization (Lucid's default image): ``batch`` images of ``w`` x ``h`` pixels.

    The spectrum starts as normal noise with std ``sd``, is scaled by 1/f**``decay_power``, turned
    into an image by an inverse real FFT, mapped through Lucid's colour decorrelation matrix (unless
    ``decorrelate=False``) and squashed into [0, 1] by a sigmoid. Any size works, square or not.

    ``alpha=True`` adds a fourth, transparency channel (B, 4, H, W); ``render`` composites it over a
    random background each step, so only what the objective needs stays opaque (see
    :func:`featvis.recipes.transparent`). ``shared`` adds low-resolution terms common to the whole
    batch, which align the images of an interpolation: ``True`` for Lucid's set
    (:data:`LUCID_SHARED`) or a list of (values along the batch, downscale factor) pairs.

    ``channels``: the colour channels of the model's input (3, RGB; 1 for a grayscale model, which
    then sees and shows gray images; any other count for multi-band inputs, each channel its own
    sigmoid, no colour decorrelation); ``render`` picks the model's own by default.

    >>> rgba = featvis.param.fourier(128, alpha=True)
    >>> frames = featvis.param.fourier(128, batch=5, shared=True)
    >>> gray = featvis.param.fourier(128, channels=1)
    """
    return Fourier(w, h, batch, sd, decay_power, decorrelate, alpha, shared, channels)
