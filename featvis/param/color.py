"""From an unconstrained tensor to a valid RGB image: colour decorrelation and sigmoid squashing."""
from __future__ import annotations

import torch

# Square root of the colour correlation matrix of ImageNet, from Lucid's
# lucid/optvis/param/color.py (`color_correlation_svd_sqrt`).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([
    [0.26, 0.09, 0.02],
    [0.27, 0.00, -0.05],
    [0.27, -0.09, 0.03],
])
# Normalized so that its largest column has unit norm, as Lucid does.
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


def decorrelate(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in a decorrelated colour basis -> (B, 3, H, W) in RGB (before squashing)."""
    return torch.einsum("ij,bjhw->bihw", COLOR_CORRELATION.to(t.device, t.dtype), t)


def to_valid_rgb(t: torch.Tensor, decorrelated: bool = True) -> torch.Tensor:
    """Map an unconstrained (B,3,H,W) tensor to [0, 1] RGB: optional decorrelation, then a sigmoid."""
    if decorrelated:
        t = decorrelate(t)
    return torch.sigmoid(t)
