"""Transparency: an RGBA image seen by the model over a background that changes every step.

Lucid's approach (``transform.collapse_alpha``, "Differentiable Image Parameterizations", Distill
2018): composite the image over a fresh random image each step, so that opaque pixels must earn
their keep for any background; a penalty on mean alpha then clears what the objective does not need.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..param.color import to_valid_rgb
from ..param.fourier import Fourier, spectrum_scale
from ..rng import as_source, to_device

#: Lucid's ``collapse_alpha(sd=0.5)``: the background is a Fourier-noise image with this spectrum std.
BACKGROUND_SD = 0.5
#: Gray for evaluating a finished image (and for drawing it without randomness).
GRAY = 0.5


@lru_cache(maxsize=8)
def _scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    return spectrum_scale(h, w, decay_power)


def random_background(shape, rng=None, sd: float = BACKGROUND_SD, decay_power: float = 1.0, device=None) -> torch.Tensor:
    """(B, 3, H, W) random images in [0, 1] for ``shape`` (B, _, H, W): 1/f Fourier noise, coloured
    and squashed like :func:`featvis.param.fourier` (Lucid's ``image_sample``); image i draws from
    its own stream of ``rng``.

    >>> backgrounds = random_background((4, 3, 128, 128), rng=0)
    """
    rng = as_source(rng, shape[0], device)
    # The noise is drawn on the CPU; to_device queues the upload without a host-device sync.
    return _background(to_device(_spectrum(shape, rng, sd, decay_power), device or "cpu"), shape)


def _spectrum(shape, rng, sd: float, decay_power: float) -> torch.Tensor:
    """The host half of :func:`random_background`: (B, 3, H, W//2+1) complex noise on the CPU."""
    B, _, H, W = shape
    scale = _scale(H, W, float(decay_power))
    return torch.view_as_complex(sd * rng.normal((3, H, W // 2 + 1, 2))) * scale


def _background(spectrum: torch.Tensor, shape) -> torch.Tensor:
    """The device half of :func:`random_background`."""
    H, W = shape[-2:]
    image = torch.fft.irfft2(spectrum, s=(H, W), norm="backward") * Fourier.OUTPUT_SCALE
    return to_valid_rgb(image, decorrelated=True)


def composite(image: torch.Tensor, background) -> torch.Tensor:
    """(B, 4, H, W) RGBA over ``background`` ((B|1, 3, H, W) or a gray level) -> (B, 3, H, W).

    >>> on_white = composite(result.images, 1.0)
    """
    rgb, a = image[:, :-1], image[:, -1:]  # the colour channels, then alpha
    if isinstance(background, torch.Tensor) and background.shape[1] == 3 and rgb.shape[1] != 3:
        background = background.mean(1, keepdim=True)  # an RGB background for a gray (or multi-band) image: its gray
    return a * rgb + (1 - a) * background


class CollapseAlpha:
    """RGBA -> RGB over a fresh random background per image and call; RGB passes through."""

    def __init__(self, sd: float = BACKGROUND_SD):
        self.sd = float(sd)

    def __call__(self, image: torch.Tensor, rng=None) -> torch.Tensor:
        if image.shape[1] == 3:
            return image
        if image.shape[1] != 4:
            raise ValueError(f"collapse_alpha expects (B, 4, H, W) RGBA images, got shape {tuple(image.shape)}")
        bg = random_background(image.shape, rng, self.sd, device=image.device).to(image.dtype)
        return composite(image, bg)

    def run(self, image: torch.Tensor, rng, feed) -> torch.Tensor:
        """``self(image, rng)`` with the noise obtained as ``feed(make, device)`` (see
        :meth:`featvis.transforms.Compose.run`)."""
        if image.shape[1] == 3:
            return image
        shape = tuple(image.shape)
        spectrum = feed(lambda: _spectrum(shape, rng, self.sd, 1.0), image.device)
        return composite(image, _background(spectrum, shape).to(image.dtype))

    def __repr__(self):
        return f"collapse_alpha(sd={self.sd:g})"


def collapse_alpha(sd: float = BACKGROUND_SD) -> CollapseAlpha:
    """Composite RGBA images over random Fourier-noise backgrounds (std ``sd``), as Lucid does.

    ``render`` does this by itself for a param with ``alpha=True`` (before the other transforms);
    use it directly to see what the model sees:

    >>> seen = collapse_alpha()(featvis.param.fourier(128, alpha=True)(), rng=0)   # (1, 3, 128, 128)
    """
    return CollapseAlpha(sd)
