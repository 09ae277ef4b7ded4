"""Objectives that read units of one layer: neurons, channels, directions, class logits, weighted
activations; and ``as_objective``, which turns a ``"layer:channel@x,y"`` string into one of them."""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch

from .._cache import DeviceCopies
from ..errors import UsageError
from ..units import Unit
from .base import Objective, index_tensor, narrow, objective

Index = Union[int, Sequence[int]]


class OutOfRange(UsageError, IndexError):
    """A channel or position outside the layer: a user's mistake (one line in the CLI) and an
    ``IndexError`` for Python callers."""


def _check_channels(layer: str, t: torch.Tensor, ns) -> None:
    if t.dim() < 2:
        raise ValueError(f"layer {layer!r} gives a {t.dim()}-d output; channel objectives need (B, C, ...)")
    C = t.shape[1]
    bad = [n for n in ns if not 0 <= n < C]
    if bad:
        raise OutOfRange(
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


def _units(layer: str, n, where: str = ""):
    """The unit label(s) of a leaf: ``"layer:n"``, or one per image for a list."""
    return f"{layer}:{n}{where}" if isinstance(n, int) else [f"{layer}:{c}{where}" for c in n]


def channel(layer: str, n: Index, batch=None) -> Objective:
    """Mean activation of channel ``n`` of ``layer`` over space; the logit itself for (B, C) outputs.

    ``n`` may be a list, one channel per image (image i maximizes channel ``n[i]``): the cheap way
    to render many channels as one batch.

    >>> channel("mixed4a", 476)
    """
    n, size = _per_image_index(n, "channel")

    @objective([layer], f"channel({layer}:{_label(n)})", batch, units=_units(layer, n))
    def fn(acts):
        a = _pick(acts[layer], layer, n)  # (B, H, W) or (B,)
        return a.flatten(1).mean(1) if a.dim() > 1 else a

    fn.batch_size = fn.batch_size or size
    return fn


class _BareMap:
    """Where ``@x,y`` point: x (column) and y (row) index ``layer``'s map for the bare image at the
    size being rendered (what ``featvis layers MODEL --size N`` shows). :meth:`Objective.bind`
    records that map's size; on a larger canvas (padded, jittered) the bare image's map sits in
    its middle, so the position is shifted by half the difference in size."""

    def __init__(self, layer: str):
        self.layer, self.hw = layer, None

    def bind(self, shapes) -> None:
        shape = shapes.get(self.layer)
        if shape is not None and len(shape) >= 3:
            self.hw = tuple(shape[-2:])

    def index(self, H: int, W: int, x: Optional[int], y: Optional[int]):
        """(row, column) in a map of H x W for the bare image's (y, x); raises if outside it."""
        h0, w0 = self.hw or (H, W)
        for axis, pos, length in (("x", x, w0), ("y", y, h0)):
            if pos is not None and not 0 <= pos < length:
                raise OutOfRange(
                    f"{axis}={pos} is outside layer {self.layer!r}, whose map is {w0} wide x {h0} high for the image "
                    f"being rendered (a transformer layer's map is its patch grid); x (the column) and y (the row) index "
                    f"that map (see: featvis layers MODEL --size N)")
        row = (h0 // 2 if y is None else y) + (H - h0) // 2
        col = (w0 // 2 if x is None else x) + (W - w0) // 2
        return min(max(row, 0), H - 1), min(max(col, 0), W - 1)


def neuron(layer: str, n: Index, x: Optional[int] = None, y: Optional[int] = None, batch=None) -> Objective:
    """Activation of channel ``n`` at one position: column ``x``, row ``y`` (the centre by default).

    ``x`` and ``y`` index the layer's map for the bare image at the size being rendered (``featvis
    layers MODEL --size N`` shows it), during optimization too: :func:`featvis.render` binds the
    map's size before the first step, raises there for a position outside it, and shifts the
    position onto the larger map of the padded, jittered canvas the model sees while optimizing.
    So ``Result.values`` (the bare image) report the neuron that was optimized."""
    n, size = _per_image_index(n, "neuron")
    where = "" if x is None and y is None else f"@{x},{y}"
    bare = _BareMap(layer)

    @objective([layer], f"neuron({layer}:{_label(n)}{where})", batch, units=_units(layer, n, where))
    def fn(acts):
        a = _pick(acts[layer], layer, n)  # (B, H, W)
        if a.dim() != 3:
            raise ValueError(f"neuron() needs a spatial layer; {layer!r} gives shape {tuple(acts[layer].shape)}")
        row, col = bare.index(*a.shape[1:], x, y)
        return a[:, row, col]

    fn.batch_size = fn.batch_size or size
    fn.binders = (bare.bind,)
    return fn


def _vector(vector, what: str) -> DeviceCopies:
    v = torch.as_tensor(vector, dtype=torch.float32)
    if v.dim() != 1:
        raise ValueError(f"{what}: the direction vector must be 1-d with one entry per channel, got shape {tuple(v.shape)}")
    return DeviceCopies(v)


def _check_len(layer, t, v):
    if t.shape[1] != v.shape[0]:
        raise ValueError(f"direction vector has {v.shape[0]} entries but layer {layer!r} has {t.shape[1]} channels")


#: Lucid's ``_dot_cossim``: the epsilon added to each norm, and the floor of the cosine (so that
#: the weight never flips the sign of the dot product). The one place featvis computes a cosine.
COS_EPS = 1e-4
COS_FLOOR = 0.1


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Cosine similarity of ``a`` and ``b`` (broadcast against each other) along ``dim``."""
    return (a * b).sum(dim) / (a.norm(dim=dim) + COS_EPS) / (b.norm(dim=dim) + COS_EPS)


def dot_cossim(a: torch.Tensor, b: torch.Tensor, cossim_pow: float, dim: int = 1) -> torch.Tensor:
    """The dot product of ``a`` and ``b`` along ``dim``, weighted by their cosine similarity
    (floored at :data:`COS_FLOOR`) to the power ``cossim_pow``; ``cossim_pow=0`` is the plain dot.

    As Lucid's ``_dot_cossim``: the optimization cannot win just by making every channel large.
    """
    dot = (a * b).sum(dim)
    if cossim_pow == 0:
        return dot
    return dot * cosine(a, b, dim).clamp(min=COS_FLOOR) ** cossim_pow


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): the mean over everything but the batch; (B,) stays as is."""
    return t.flatten(1).mean(1) if t.dim() > 1 else t


def direction(layer: str, vector, cossim_pow: float = 1.0, batch=None) -> Objective:
    """Activation along ``vector`` (one entry per channel), averaged over space.

    Cosine-weighted as in Lucid's ``direction``: the dot product with ``vector`` times the cosine
    similarity (floored at 0.1) to the power ``cossim_pow``, so that the optimization cannot win
    just by making activations large in every channel. ``cossim_pow=0`` is the plain dot product.

    ``vector`` may be a (B, C) matrix, one direction per image (image i follows row i): the cheap
    way to render many directions as one batch (an activation atlas's cells).
    """
    m = torch.as_tensor(vector, dtype=torch.float32)
    if m.dim() > 2:
        raise ValueError(f"direction: the vector must be 1-d (one entry per channel) or 2-d (one direction per "
                         f"image), got shape {tuple(m.shape)}")
    if m.dim() == 2:
        if m.shape[0] == 0:
            raise ValueError("direction: empty matrix of directions")
        rows = DeviceCopies(m)

        @objective([layer], f"direction({layer}, {m.shape[0]} directions)", batch)
        def each(acts):
            t = acts[layer]
            _check_len(layer, t, m[0])
            if t.shape[0] != m.shape[0]:
                raise ValueError(f"{m.shape[0]} directions were given, one per image, but the batch has {t.shape[0]} images")
            return dot_cossim(t, rows.like(t).view(*m.shape, *([1] * (t.dim() - 2))), cossim_pow).flatten(1).mean(1)

        each.batch_size = each.batch_size or m.shape[0]
        return each
    v = _vector(vector, "direction")

    @objective([layer], f"direction({layer})", batch, units=f"direction({layer})")
    def fn(acts):
        t = acts[layer]
        _check_len(layer, t, v)
        return dot_cossim(t, v.like(t).view(1, -1, *([1] * (t.dim() - 2))), cossim_pow).flatten(1).mean(1)

    return fn


def direction_neuron(layer: str, vector, x: Optional[int] = None, y: Optional[int] = None,
                     cossim_pow: float = 1.0, batch=None) -> Objective:
    """Like :func:`direction`, at one position (column ``x``, row ``y``; the centre by default)."""
    v = _vector(vector, "direction_neuron")
    bare = _BareMap(layer)

    @objective([layer], f"direction_neuron({layer})", batch, units=f"direction_neuron({layer})")
    def fn(acts):
        t = acts[layer]
        _check_len(layer, t, v)
        if t.dim() != 4:
            raise ValueError(f"direction_neuron() needs a spatial layer; {layer!r} gives shape {tuple(t.shape)}")
        row, col = bare.index(*t.shape[2:], x, y)
        t = t[:, :, row, col]
        return dot_cossim(t, v.like(t).view(1, -1), cossim_pow)

    fn.binders = (bare.bind,)
    return fn


def deepdream(layer: str, batch=None) -> Objective:
    """Mean squared activation of the whole layer (DeepDream's objective)."""
    @objective([layer], f"deepdream({layer})", batch, units=f"deepdream({layer})")
    def fn(acts):
        return acts[layer].pow(2).flatten(1).mean(1)

    return fn


def class_logit(n: Index, layer: str = "logits", batch=None) -> Objective:
    """The logit of class ``n``: by default of ``"logits"``, the model's output (any featvis model
    has it); or of another ``layer`` (``featvis layers MODEL`` lists them). Like Lucid's
    ``class_logit``: the pre-softmax score, which cannot be raised by lowering the other classes.
    ``n`` may be a list, one class per image. A spatial (B, C, H, W) output is averaged over space.

    >>> result = featvis.render(model, class_logit(207))   # golden retriever
    """
    n, size = _per_image_index(n, "class_logit")

    @objective([layer], f"class_logit({layer}:{_label(n)})", batch, units=_units(layer, n))
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
    return Objective(fn, a.layers | b.layers, name, Objective._join(Objective._join(a.batch_size, b.batch_size), size),
                     binders=a.binders + b.binders)


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
        cos = cosine(t, v.like(t).view(1, -1, *([1] * (t.dim() - 2))))  # (B, ...)
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


def as_objective(spec: Union[Objective, str]) -> Objective:
    """An ``Objective`` as is, or a unit string ``"layer:channel"`` / ``"layer:channel@x,y"`` (a
    neuron; see :class:`featvis.units.Unit` for the syntax and the coordinates)."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, (str, Unit)):
        unit = Unit.parse(spec)
        if not unit.is_neuron:
            return channel(unit.layer, unit.channel)
        return neuron(unit.layer, unit.channel, x=unit.x, y=unit.y)
    raise TypeError(f"objective must be an Objective or a 'layer:channel' string, got {type(spec).__name__}")
