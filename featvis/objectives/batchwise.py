"""The rest of Lucid's objectives: interpolation and alignment across a batch, class logits,
interactions, cosine directions and weighted activations."""
from __future__ import annotations

from typing import Union

import torch

from .._cache import DeviceCopies
from .base import Objective, as_objective, narrow, objective
from .channel import Index, _check_len, _label, _per_image_index, _pick, _vector

#: Lucid's ``alignment`` compares each image with the next four.
ALIGNMENT_REACH = 4


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): the mean over everything but the batch; (B,) stays as is."""
    return t.flatten(1).mean(1) if t.dim() > 1 else t


def channel_interpolate(layer1: str, n1: int, layer2: str, n2: int, batch=None) -> Objective:
    """Interpolate from unit ``layer1:n1`` to ``layer2:n2`` across the batch (Lucid's
    ``channel_interpolate``): image i of B maximizes ``(1 - w) * channel1 + w * channel2`` with
    w = i / (B - 1), so the first image shows the first unit, the last the second, and those
    between blend them. Pair it with a shared parameterization so that the frames align:

    >>> obj = channel_interpolate("mixed4a", 476, "mixed4a", 460) + 0.1 * alignment("mixed4a")
    >>> result = featvis.render(model, obj, param=featvis.param.fourier(128, batch=5, shared=True))
    """
    @objective([layer1, layer2], f"channel_interpolate({layer1}:{n1}, {layer2}:{n2})", batch)
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


def class_logit(n: Index, layer: str = "logits", batch=None) -> Objective:
    """The logit of class ``n``: by default of ``"logits"``, the model's output (any featvis model
    has it); or of another ``layer`` (``featvis layers MODEL`` lists them). Like Lucid's
    ``class_logit``: the pre-softmax score, which cannot be raised by lowering the other classes.
    ``n`` may be a list, one class per image. A spatial (B, C, H, W) output is averaged over space.

    >>> result = featvis.render(model, class_logit(207))   # golden retriever
    """
    n, size = _per_image_index(n, "class_logit")

    @objective([layer], f"class_logit({layer}:{_label(n)})", batch)
    def fn(acts):
        return _spatial_mean(_pick(acts[layer], layer, n))

    fn.batch_size = fn.batch_size or size
    return fn


def neuron_interaction(unit1: Union[str, Objective], unit2: Union[str, Objective], batch=None) -> Objective:
    """Two units at once: the sum of their objectives (the "interaction between neurons" figures of
    Feature Visualization, Distill 2017). A unit is ``"layer:channel"``, ``"layer:channel@x,y"``
    or any objective.

    >>> obj = neuron_interaction("mixed4a:476", "mixed4a:460")
    """
    a, b = as_objective(unit1), as_objective(unit2)
    fn, size = narrow(lambda acts: a(acts) + b(acts), batch)
    name = f"neuron_interaction({a.name}, {b.name})" + ("" if batch is None else f"[batch={batch}]")
    return Objective(fn, a.layers | b.layers, name, Objective._join(Objective._join(a.batch_size, b.batch_size), size))


def direction_cossim(layer: str, vector, cossim_pow: float = 1.0, batch=None) -> Objective:
    """Cosine similarity between the activation vector at each position and ``vector`` (one entry
    per channel), averaged over positions (Lucid's ``direction_cossim``): the direction alone, with
    no reward for large activations. ``cossim_pow`` sharpens it, sign(cos) * |cos| ** cossim_pow
    (1, the default, is the plain cosine); compare :func:`direction`, the dot product weighted by
    the cosine.

    >>> obj = direction_cossim("layer3", torch.randn(256), cossim_pow=2)
    """
    v = _vector(vector, "direction_cossim")
    if cossim_pow <= 0:
        raise ValueError(f"cossim_pow must be positive, got {cossim_pow}")

    @objective([layer], f"direction_cossim({layer})", batch)
    def fn(acts):
        t = acts[layer]
        _check_len(layer, t, v)
        vv = v.like(t).view(1, -1, *([1] * (t.dim() - 2)))
        cos = (t * vv).sum(1) / (t.norm(dim=1) * vv.norm() + 1e-4)  # (B, ...); eps as Lucid's _dot_cossim
        if cossim_pow != 1:
            cos = cos.sign() * cos.abs().clamp(min=1e-6) ** cossim_pow
        return _spatial_mean(cos)

    return fn


def activation_weighted(layer: str, weights, batch=None) -> Objective:
    """A weighted sum of ``layer``'s activations (Lucent's ``channel_weight``/``neuron_weight``):
    ``weights`` broadcasts against one image's output (C, H, W): (C,) weights the channels,
    (C, H, W) every unit. Summed over channels, averaged over positions, so a one-hot (C,) weight
    is exactly :func:`channel`.

    >>> obj = activation_weighted("layer3", torch.randn(256))      # layer3 of a ResNet-18: 256 channels
    """
    w = DeviceCopies(torch.as_tensor(weights, dtype=torch.float32))
    if w.tensor.dim() == 0:
        raise ValueError("activation_weighted needs a weight per channel (C,) or per unit (C, H, W), got a scalar")

    @objective([layer], f"activation_weighted({layer})", batch)
    def fn(acts):
        t = acts[layer]
        ww = w.like(t)
        if ww.dim() == 1:
            _check_len(layer, t, ww)
            ww = ww.view(-1, *([1] * (t.dim() - 2)))
        try:
            prod = t * ww  # (B, C, ...)
        except RuntimeError:
            raise ValueError(f"weights of shape {tuple(w.shape)} do not fit layer {layer!r}, whose output is "
                             f"{tuple(t.shape[1:])} per image; give (C,) or that shape") from None
        return _spatial_mean(prod.sum(1))

    return fn
