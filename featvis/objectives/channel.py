"""Objectives on units of a layer: neurons, channels, directions, and the batch-wide diversity term."""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .._cache import DeviceCopies
from .base import Objective, index_tensor, objective

Index = Union[int, Sequence[int]]


def _check_channels(layer: str, t: torch.Tensor, ns) -> None:
    if t.dim() < 2:
        raise ValueError(f"layer {layer!r} gives a {t.dim()}-d output; channel objectives need (B, C, ...)")
    C = t.shape[1]
    bad = [n for n in ns if not 0 <= n < C]
    if bad:
        raise IndexError(
            f"channel {bad[0]} is out of range for layer {layer!r}, which has {C} channels (0..{C - 1}); "
            f"see: featvis layers MODEL")


def _per_image_index(n: Index, what: str):
    """An int (same unit for every image) or a sequence (unit n[i] for image i)."""
    if isinstance(n, numbers.Integral):
        return int(n), None
    ns = [int(i) for i in n]
    if not ns:
        raise ValueError(f"{what}: empty list of channels")
    return ns, len(ns)


def _pick(t: torch.Tensor, layer: str, n) -> torch.Tensor:
    """(B, C, ...) -> (B, ...): channel n, or channel n[i] for image i."""
    if isinstance(n, int):
        _check_channels(layer, t, [n])
        return t[:, n]
    _check_channels(layer, t, n)
    if t.shape[0] != len(n):
        raise ValueError(f"{len(n)} channels were given, one per image, but the batch has {t.shape[0]} images")
    idx = index_tensor(tuple(n), t.device).view(-1, 1, *([1] * (t.dim() - 2)))
    return t.gather(1, idx.expand(-1, 1, *t.shape[2:])).squeeze(1)


def _label(n):
    return str(n) if isinstance(n, int) else "[" + ",".join(map(str, n)) + "]"


def channel(layer: str, n: Index, batch=None) -> Objective:
    """Mean activation of channel ``n`` of ``layer`` over space; the logit itself for (B, C) outputs.

    ``n`` may be a list, one channel per image (image i maximizes channel ``n[i]``): the cheap way
    to render many channels as one batch.

    >>> channel("mixed4a", 476)
    """
    n, size = _per_image_index(n, "channel")

    @objective([layer], f"channel({layer}:{_label(n)})", batch)
    def fn(acts):
        a = _pick(acts[layer], layer, n)  # (B, H, W) or (B,)
        return a.flatten(1).mean(1) if a.dim() > 1 else a

    fn.batch_size = fn.batch_size or size
    return fn


def _centre_or(pos: Optional[int], length: int, axis: str, layer: str) -> int:
    if pos is None:
        return length // 2
    if not 0 <= pos < length:
        raise IndexError(f"{axis}={pos} is outside layer {layer!r}, whose map is {length} wide along {axis}")
    return pos


def neuron(layer: str, n: Index, x: Optional[int] = None, y: Optional[int] = None, batch=None) -> Objective:
    """Activation of channel ``n`` at one position: column ``x``, row ``y`` (the centre by default)."""
    n, size = _per_image_index(n, "neuron")
    where = "" if x is None and y is None else f"@{x},{y}"

    @objective([layer], f"neuron({layer}:{_label(n)}{where})", batch)
    def fn(acts):
        a = _pick(acts[layer], layer, n)  # (B, H, W)
        if a.dim() != 3:
            raise ValueError(f"neuron() needs a spatial layer; {layer!r} gives shape {tuple(acts[layer].shape)}")
        H, W = a.shape[1:]
        return a[:, _centre_or(y, H, "y", layer), _centre_or(x, W, "x", layer)]

    fn.batch_size = fn.batch_size or size
    return fn


def _vector(vector, what: str) -> DeviceCopies:
    v = torch.as_tensor(vector, dtype=torch.float32)
    if v.dim() != 1:
        raise ValueError(f"{what}: the direction vector must be 1-d with one entry per channel, got shape {tuple(v.shape)}")
    return DeviceCopies(v)


def _check_len(layer, t, v):
    if t.shape[1] != v.shape[0]:
        raise ValueError(f"direction vector has {v.shape[0]} entries but layer {layer!r} has {t.shape[1]} channels")


def _dot_cossim(t: torch.Tensor, v: DeviceCopies, cossim_pow: float) -> torch.Tensor:
    """(B, C, ...) . (C,) -> (B, ...): dot product weighted by cosine similarity ** cossim_pow.

    As in Lucid: the cosine is floored at 0.1 so that the weight never flips the sign of the dot.
    """
    v = v.like(t).view(1, -1, *([1] * (t.dim() - 2)))
    dot = (t * v).sum(1)
    if cossim_pow == 0:
        return dot
    cos = dot / (t.norm(dim=1) + 1e-4) / (v.norm() + 1e-4)  # eps 1e-4 as Lucid's _dot_cossim
    return dot * cos.clamp(min=0.1) ** cossim_pow


def direction(layer: str, vector, cossim_pow: float = 1.0, batch=None) -> Objective:
    """Activation along ``vector`` (one entry per channel), averaged over space.

    Cosine-weighted as in Lucid's ``direction``: the dot product with ``vector`` times the cosine
    similarity (floored at 0.1) to the power ``cossim_pow``, so that the optimization cannot win
    just by making activations large in every channel. ``cossim_pow=0`` is the plain dot product.
    """
    v = _vector(vector, "direction")

    @objective([layer], f"direction({layer})", batch)
    def fn(acts):
        t = acts[layer]
        _check_len(layer, t, v)
        return _dot_cossim(t, v, cossim_pow).flatten(1).mean(1)

    return fn


def direction_neuron(layer: str, vector, x: Optional[int] = None, y: Optional[int] = None,
                     cossim_pow: float = 1.0, batch=None) -> Objective:
    """Like :func:`direction`, at one position (column ``x``, row ``y``; the centre by default)."""
    v = _vector(vector, "direction_neuron")

    @objective([layer], f"direction_neuron({layer})", batch)
    def fn(acts):
        t = acts[layer]
        _check_len(layer, t, v)
        if t.dim() != 4:
            raise ValueError(f"direction_neuron() needs a spatial layer; {layer!r} gives shape {tuple(t.shape)}")
        H, W = t.shape[2:]
        t = t[:, :, _centre_or(y, H, "y", layer), _centre_or(x, W, "x", layer)]
        return _dot_cossim(t, v, cossim_pow)

    return fn


def deepdream(layer: str, batch=None) -> Objective:
    """Mean squared activation of the whole layer (DeepDream's objective)."""
    @objective([layer], f"deepdream({layer})", batch)
    def fn(acts):
        return acts[layer].pow(2).flatten(1).mean(1)

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
