"""Random crops, flips and noise: the stronger augmentations that readable visualizations of
modern networks need (MACO, Fel et al. 2023, optimizes through random crops of the image; a
picture that must work in every crop cannot hide its class in a pixel pattern).

The crop and the flip are :class:`~.geometric.Geometric`, so inside a :func:`~featvis.transforms.compose`
they fuse with pad/jitter/scale/rotate into one warp per image.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .geometric import _CPU, Geometric, Size, _eye
from ..rng import as_source


class RandomCrop(Geometric):
    """A square-ish box whose side is a fraction ``s`` of the image's (``s`` uniform in ``scale``),
    at a uniform position, resized to the whole canvas (or to ``size``)."""

    draws = 3

    def __init__(self, scale: Tuple[float, float] = (0.5, 1.0), size: Optional[Size] = None):
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"random_crop scale must be 0 < low <= high <= 1 (fractions of the side), got {scale}")
        self.scale, self.size = (lo, hi), None if size is None else (int(size[0]), int(size[1]))
        self.label = f"random_crop({lo:g}..{hi:g})"

    def matrices(self, rng, B, size, device=_CPU):
        H, W = size
        out = self.size or size
        u = np.asarray(rng.uniform(3), dtype=np.float64)  # (B, 3): side, x, y
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        x0, y0 = u[:, 1] * (1 - s) * W, u[:, 2] * (1 - s) * H  # the box's top-left corner
        kx, ky = out[1] / (s * W), out[0] / (s * H)
        M = _eye(B)
        M[:, 0, 0], M[:, 1, 1] = kx, ky
        M[:, 0, 2], M[:, 1, 2] = -x0 * kx, -y0 * ky
        return M, out


class RandomFlip(Geometric):
    """Mirror left-right with probability ``p``."""

    draws = 1

    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"random_flip probability must lie in [0, 1], got {p}")
        self.p = float(p)
        self.label = f"random_flip({p:g})"

    def matrices(self, rng, B, size, device=_CPU):
        H, W = size
        flip = np.asarray(rng.uniform(1), dtype=np.float64)[:, 0] < self.p
        M = _eye(B)
        M[flip, 0, 0], M[flip, 0, 2] = -1.0, W - 1.0
        return M, size


class Noise:
    """Add normal noise of std ``sd`` to each pixel, drawn from each image's own stream."""

    def __init__(self, sd: float = 0.02):
        if sd < 0:
            raise ValueError(f"noise sd must be >= 0, got {sd}")
        self.sd = float(sd)

    def __call__(self, image: torch.Tensor, rng=None) -> torch.Tensor:
        if not self.sd:
            return image
        rng = as_source(rng, image.shape[0], image.device)
        noise = rng.normal(image.shape[1:]).to(image.device, image.dtype)
        return image + self.sd * noise

    def __repr__(self):
        return f"noise({self.sd:g})"


def random_crop(scale: Sequence[float] = (0.5, 1.0), size: Optional[Size] = None) -> RandomCrop:
    """Crop a random box (side a fraction in ``scale`` of the image's) and resize it to the canvas
    (or to ``size`` = (H, W))."""
    return RandomCrop(tuple(scale), size)


def random_flip(p: float = 0.5) -> RandomFlip:
    """Mirror each image left-right with probability ``p``."""
    return RandomFlip(p)


def noise(sd: float = 0.02) -> Noise:
    """Add pixel noise of std ``sd`` (per-image streams)."""
    return Noise(sd)


__all__ = ["random_crop", "random_flip", "noise", "RandomCrop", "RandomFlip", "Noise"]
