"""Objectives that read the whole batch: diversity (images pushed apart), interpolation and
alignment (neighbouring images alike)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Objective, objective
from .channels import _pick, _spatial_mean

#: Lucid's ``alignment`` compares each image with the next four.
ALIGNMENT_REACH = 4


def channel_interpolate(layer1: str, n1: int, layer2: str, n2: int, batch=None) -> Objective:
    """Interpolate from unit ``layer1:n1`` to ``layer2:n2`` across the batch (Lucid's
    ``channel_interpolate``): image i of B maximizes ``(1 - w) * channel1 + w * channel2`` with
    w = i / (B - 1), so the first image shows the first unit, the last the second, and those
    between blend them. Pair it with a shared parameterization so that the frames align:

    >>> obj = channel_interpolate("mixed4a", 476, "mixed4a", 460) + 0.1 * alignment("mixed4a")
    >>> result = featvis.render(model, obj, param=featvis.param.fourier(128, batch=5, shared=True))
    """
    @objective([layer1, layer2], f"channel_interpolate({layer1}:{n1}, {layer2}:{n2})", batch,
               units=f"{layer1}:{n1} -> {layer2}:{n2}")
    def fn(acts):
        a = _spatial_mean(_pick(acts[layer1], layer1, int(n1)))  # (B,)
        b = _spatial_mean(_pick(acts[layer2], layer2, int(n2)))
        B = a.shape[0]
        w = torch.arange(B, device=a.device, dtype=a.dtype) / max(B - 1, 1)
        return (1 - w) * a + w * b

    return fn


def alignment(layer: str, decay_ratio: float = 2.0, batch=None) -> Objective:
    """Neighbouring images of a batch should look alike at ``layer`` (Lucid's ``alignment``): minus
    the mean squared difference between images i and i+d, for d = 1..4, divided by
    ``decay_ratio ** d``. Each pair's term is split between its two images, so the values sum to
    Lucid's total. Add it with a weight to an interpolation (see :func:`channel_interpolate`).

    >>> obj = channel_interpolate("mixed4a", 476, "mixed4a", 460) + 0.1 * alignment("mixed3b", decay_ratio=5)
    """
    if decay_ratio <= 0:
        raise ValueError(f"alignment decay_ratio must be positive, got {decay_ratio}")

    @objective([layer], f"alignment({layer})", batch)
    def fn(acts):
        t = acts[layer]
        values = t.new_zeros(t.shape[0])
        for d in range(1, min(ALIGNMENT_REACH, t.shape[0] - 1) + 1):
            diff = (t[:-d] - t[d:]).pow(2).flatten(1).mean(1) / decay_ratio ** d  # (B - d,)
            values = values - torch.nn.functional.pad(diff, (0, d)) / 2 - torch.nn.functional.pad(diff, (d, 0)) / 2
        return values

    return fn


def diversity(layer: str, batch=None) -> Objective:
    """How different the images of a batch are at ``layer`` (Lucid's Gram-matrix diversity term).

    Each image's value is minus the summed cosine similarity of its Gram matrix (channels x
    channels, over positions) with every other image's, divided by the batch size; summed over
    images this is Lucid's ``diversity``. It is a score to *maximize*, so add it with a weight:
    ``channel("mixed4a", 97) + 100 * diversity("mixed4a")``. ``batch=[i, j, ...]`` limits it to a
    group of images (several channels with several diverse images each, in one batch).
    """
    @objective([layer], f"diversity({layer})", batch)
    def fn(acts):
        t = acts[layer]
        B, C = t.shape[:2]
        flat = t.reshape(B, C, -1)  # (B, C, HW)
        gram = F.normalize((flat @ flat.transpose(1, 2)).reshape(B, -1), dim=1, eps=1e-10)  # (B, C*C)
        sim = gram @ gram.T  # (B, B)
        return -(sim.sum(1) - sim.diagonal()) / B

    return fn
