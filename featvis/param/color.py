"""From an unconstrained tensor to a valid RGB image: colour decorrelation and sigmoid squashing."""
from __future__ import annotations

import torch

from .._cache import DeviceCopies

# Square root of the colour correlation matrix of ImageNet, from Lucid's
# lucid/optvis/param/color.py (`color_correlation_svd_sqrt`).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([
    [0.26, 0.09, 0.02],
    [0.27, 0.00, -0.05],
    [0.27, -0.09, 0.03],
])
# Normalized so that its largest column has unit norm, as Lucid does.
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
_COLOR_CORRELATION = DeviceCopies(COLOR_CORRELATION)


def decorrelate(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in a decorrelated colour basis -> (B, 3, H, W) in RGB (before squashing)."""
    return torch.einsum("ij,bjhw->bihw", _COLOR_CORRELATION.like(t), t)


def to_valid_rgb(t: torch.Tensor, decorrelated: bool = True) -> torch.Tensor:
    """Map an unconstrained (B,3,H,W) tensor to [0, 1] RGB: optional decorrelation, then a sigmoid."""
    if decorrelated:
        t = decorrelate(t)
    return torch.sigmoid(t)


def to_valid_rgba(t: torch.Tensor, decorrelated: bool = True, colors: int = 3) -> torch.Tensor:
    """(B, colors [+1], H, W) unconstrained -> [0, 1]: RGB as :func:`to_valid_rgb`, a last (alpha)
    channel through a plain sigmoid (alpha has no colour to decorrelate), as Lucid's
    ``param.image(alpha=True)``. Images of other than 3 colour channels (grayscale, 4-band) have no
    colour correlation to undo: each channel is a plain sigmoid."""
    if colors != 3:
        return torch.sigmoid(t)
    if t.shape[1] == 3:
        return to_valid_rgb(t, decorrelated)
    return torch.cat([to_valid_rgb(t[:, :3], decorrelated), torch.sigmoid(t[:, 3:])], 1)


#: Images are clamped to [EPS, 1 - EPS] before the inverse sigmoid, so that a pure black or white
#: pixel maps to a finite value (logit(0.01) = -4.6) whose sigmoid still has a usable gradient.
INVERSE_EPS = 0.01


def from_valid_rgba(image: torch.Tensor, decorrelated: bool = True, colors: int = 3) -> torch.Tensor:
    """The inverse of :func:`to_valid_rgba`: (B, 3|4, H, W) in [0, 1] -> the unconstrained tensor.

    Used to start an optimization from a given image. Values are clamped to
    [INVERSE_EPS, 1 - INVERSE_EPS] first, so the round trip changes a pixel by at most 0.01.
    """
    t = torch.logit(image.clamp(INVERSE_EPS, 1 - INVERSE_EPS))
    if decorrelated and colors == 3:
        inv = torch.linalg.inv(COLOR_CORRELATION.double()).to(t.device, t.dtype)
        rgb = torch.einsum("ij,bjhw->bihw", inv, t[:, :3])
        t = torch.cat([rgb, t[:, 3:]], 1)
    return t
