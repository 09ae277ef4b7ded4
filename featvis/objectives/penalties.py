"""Penalties and priors on the image (the pseudo-layer ``"input"``) or on a layer."""
from __future__ import annotations

import torch

from ..hooks import INPUT
from .base import Objective, objective


def total_variation(layer: str = INPUT, batch=None) -> Objective:
    """Mean absolute difference between neighbouring pixels (a smoothness penalty: subtract it).

    A mean rather than Lucid's sum, so its weight does not depend on the image size:
    ``channel("mixed4a", 476) - 0.05 * total_variation()``.
    """
    @objective([layer], "total_variation()" if layer == INPUT else f"total_variation({layer})", batch)
    def fn(acts):
        x = acts[layer]
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        return dx + dy

    return fn


def l1(constant: float = 0.0, layer: str = INPUT, batch=None) -> Objective:
    """Mean absolute distance of the image (or a layer) from ``constant``: subtract it to pull towards it."""
    @objective([layer], f"l1({layer if layer != INPUT else ''})", batch)
    def fn(acts):
        return (acts[layer] - constant).abs().flatten(1).mean(1)

    return fn


def l2(constant: float = 0.0, layer: str = INPUT, epsilon: float = 1e-6, batch=None) -> Objective:
    """Root-mean-square distance of the image (or a layer) from ``constant``: subtract it as a penalty.

    ``epsilon`` keeps the square root differentiable at zero, as in Lucid's L2.
    """
    @objective([layer], f"l2({layer if layer != INPUT else ''})", batch)
    def fn(acts):
        return ((acts[layer] - constant).pow(2).flatten(1).mean(1) + epsilon).sqrt()

    return fn
