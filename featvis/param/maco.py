"""MACO: optimize only the Fourier phase of an image, under a fixed (natural) amplitude spectrum.

Fel et al. 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization" (MACO): the amplitude spectrum of a natural image carries little of what it shows
but sets how natural its statistics are; fixing it to the mean spectrum of natural images and
optimizing the phase alone keeps every visualization's power spectrum natural (no high-frequency
noise can grow), which is what makes visualizations of deeper, modern networks readable.

The image (B, 3, H, W) is built in the decorrelated colour basis of :mod:`.color` (as
:func:`~featvis.param.fourier`): spectrum = A * exp(i * phase) with A (3, H, W) fixed, the phase
made odd (phase(-f) = -phase(f)) so that the inverse FFT is exactly real and the image's amplitude
spectrum is exactly A; then decorrelated and squashed by a sigmoid. By Parseval, a fixed amplitude
also fixes the image's variance, so MACO's per-step standardization is a constant here, folded
into A.

MACO's transparency map, the input gradients accumulated over the optimization (where the
objective looked), is kept by the param: :meth:`Maco.transparency` is (B, 1, H, W) in [0, 1].
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..rng import RandomSource, as_source
from .base import ImageParam, size_hw
from .color import from_valid_rgba, to_valid_rgb

#: Pixel standard deviation of each decorrelated channel before the sigmoid, the default contrast.
#: At 1.0 the pictures look washed out (RGB std about 0.13 after the sigmoid) and MobileNetV2's
#: class logits were not fitted in 64 steps; 2.0 fits them (benchmarks/quality_imagenet.py).
DEFAULT_SD = 2.0


def natural_spectrum(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """(3, h, w) amplitude 1 / f**decay_power (f in cycles per pixel, floored at one cycle per
    image), the same for the three decorrelated channels, zero at f = 0: the built-in default,
    whose power falls as 1/f**2 like natural images' (van der Schaaf & van Hateren 1996). In
    ``torch.fft`` order (f = 0 at index [0, 0])."""
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.fftfreq(w).view(1, -1)
    f = (fx * fx + fy * fy).sqrt()
    amp = 1.0 / f.clamp(min=1.0 / max(h, w)) ** decay_power
    amp[0, 0] = 0.0  # the mean is set by the sigmoid's centre, not by the spectrum
    return amp.expand(3, h, w).clone()


def _negated(t: torch.Tensor) -> torch.Tensor:
    """t(-f) for t(f) in torch.fft order on the last two axes: index k -> (-k) mod n."""
    return torch.roll(torch.flip(t, (-2, -1)), (1, 1), (-2, -1))


def resize_spectrum(amplitude: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A (C, h0, w0) amplitude spectrum (torch.fft order) resampled to (C, h, w), frequencies taken
    in cycles per image (so a spectrum measured at 224 px serves a 128 px image); symmetric."""
    amplitude = amplitude.float()
    if tuple(amplitude.shape[-2:]) != (h, w):
        centred = torch.fft.fftshift(amplitude, (-2, -1))[None]
        centred = F.interpolate(centred, size=(h, w), mode="bilinear", align_corners=False)[0]
        amplitude = torch.fft.ifftshift(centred, (-2, -1))
    amplitude = (amplitude + _negated(amplitude)) / 2  # a real image has a symmetric amplitude
    amplitude = amplitude.clone()
    amplitude[:, 0, 0] = 0.0
    return amplitude


def load_spectrum(spectrum: Union[None, str, Path, torch.Tensor]) -> Optional[torch.Tensor]:
    """A (3, H, W) amplitude tensor from a tensor or a file written by ``featvis spectrum``."""
    if spectrum is None or isinstance(spectrum, torch.Tensor):
        t = spectrum
    else:
        path = Path(spectrum)
        if not path.is_file():
            raise FileNotFoundError(f"no spectrum file {str(path)!r}; make one with: featvis spectrum --images DIR --out {path}")
        data = torch.load(path, map_location="cpu", weights_only=True)
        t = data["amplitude"] if isinstance(data, dict) else data
    if t is not None and (t.dim() != 3 or t.shape[0] != 3 or not torch.isfinite(t).all() or (t < 0).any()):
        raise ValueError(f"a spectrum must be a finite, non-negative (3, H, W) amplitude tensor, got shape "
                         f"{tuple(t.shape)}; make one with: featvis spectrum --images DIR --out spectrum.pt")
    return t


class Maco(ImageParam):
    """The module :func:`maco` returns (see there)."""

    #: Adam on phases in radians: MACO takes large steps (lr 0.1 did not fit MobileNetV2's class
    #: logits in 64 steps, 1.0 does; benchmarks/quality_imagenet.py).
    default_lr = 1.0

    def __init__(self, w: int, h: Optional[int] = None, batch: int = 1, spectrum=None,
                 sd: float = DEFAULT_SD, decorrelate: bool = True):
        super().__init__()
        self.height, self.width = size_hw(w, h)
        self.batch, self.decorrelate, self.sd = int(batch), bool(decorrelate), float(sd)
        if self.sd <= 0:
            raise ValueError(f"maco sd (the image's contrast) must be > 0, got {sd}")
        given = load_spectrum(spectrum)
        amp = natural_spectrum(self.height, self.width) if given is None else given
        amp = resize_spectrum(amp, self.height, self.width)  # (3, H, W)
        if not (amp > 0).any():
            raise ValueError("the spectrum is zero everywhere except f = 0; the image would be flat")
        # Each channel's pixel std is sqrt(sum |A|^2) / (H*W) (Parseval); scale all channels by one
        # factor (keeping their ratios) so that the mean over channels is sd.
        std = amp.pow(2).sum((-2, -1)).sqrt() / (self.height * self.width)
        self.register_buffer("amplitude", amp * (self.sd / std.mean()), persistent=False)
        self.phase = nn.Parameter(torch.empty(self.batch, 3, self.height, self.width))
        # Sum over steps of |d loss / d image|, mean over colour channels: (B, 1, H, W).
        self.register_buffer("grad_sum", torch.zeros(self.batch, 1, self.height, self.width), persistent=False)
        self.reset(as_source(None, self.batch, "cpu"))

    def reset(self, rng: RandomSource) -> None:
        with torch.no_grad():
            self.phase.copy_(math.pi * (2 * torch.stack([torch.rand(self.phase.shape[1:], generator=g)
                                                         for g in rng.generators]) - 1).to(self.phase.device))
            self.grad_sum.zero_()

    def spectrum(self) -> torch.Tensor:
        """(B, 3, H, W) complex: the image's spectrum in the decorrelated basis, |.| = amplitude."""
        phase = (self.phase - _negated(self.phase)) / 2  # odd, so the inverse FFT is real
        return torch.polar(self.amplitude.expand_as(phase), phase)

    def set_image(self, images: torch.Tensor) -> None:
        """Keep the phase of ``images`` (the amplitude stays the fixed one)."""
        t = from_valid_rgba(images[:, :3], self.decorrelate)
        with torch.no_grad():
            self.phase.copy_(torch.angle(torch.fft.fft2(t)).to(self.phase.dtype))
            self.grad_sum.zero_()

    def forward(self) -> torch.Tensor:
        spectrum = self.spectrum()[..., : self.width // 2 + 1]  # (B, 3, H, W//2 + 1): Hermitian half
        # pixel std of each channel: sqrt(sum A^2) / (H*W), fixed (see __init__)
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="backward")
        image = to_valid_rgb(image, self.decorrelate)  # (B, 3, H, W) in [0, 1]
        if image.requires_grad:
            image.register_hook(self._accumulate)
        return image

    def _accumulate(self, grad: torch.Tensor) -> None:
        self.grad_sum += grad.detach().abs().mean(1, keepdim=True).to(self.grad_sum.dtype)

    def transparency(self) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1]: the accumulated input-gradient magnitudes over the optimization,
        divided by each image's maximum (MACO's transparency map); zeros before any step."""
        g = self.grad_sum.detach()
        top = g.flatten(1).max(1).values.view(-1, 1, 1, 1)
        return (g / top.clamp(min=torch.finfo(g.dtype).tiny)).clamp(0, 1)

    def rgba(self) -> torch.Tensor:
        """(B, 4, H, W): the current images with the transparency map as alpha (MACO's figures)."""
        with torch.no_grad():
            return torch.cat([self(), self.transparency()], 1)

    def extra_repr(self):
        return super().extra_repr() + f", sd={self.sd}, decorrelate={self.decorrelate}"


def maco(w: int, h: Optional[int] = None, batch: int = 1, spectrum=None, sd: float = DEFAULT_SD,
         decorrelate: bool = True) -> Maco:
    """MACO parameterization (Fel et al. 2023): ``batch`` images of ``w`` x ``h`` pixels whose
    Fourier phase is optimized under a fixed amplitude spectrum.

    ``spectrum``: the fixed amplitude, a (3, H, W) tensor in ``torch.fft`` order in the decorrelated
    colour basis, or the path of a file written by ``featvis spectrum --images DIR --out FILE``
    (the mean spectrum of your natural images; resampled to the image size); ``None`` for the
    built-in 1/f spectrum (:func:`natural_spectrum`), no download needed. ``sd``: the contrast,
    each decorrelated channel's pixel std before the sigmoid. The phase starts uniform in
    [-pi, pi) (pink noise). After ``render``, ``param.transparency()`` is MACO's transparency map
    and ``param.rgba()`` the images with it as alpha.

    >>> p = featvis.param.maco(224)
    >>> result = featvis.render(model, class_logit(1), param=p, steps=512, seed=0)
    >>> alpha = p.transparency()          # (1, 1, 224, 224) in [0, 1]
    """
    return Maco(w, h, batch, spectrum, sd, decorrelate)
