"""Expanded weights: how the units of one layer feed a unit of a later layer, through everything between.

Feature visualization says what a unit responds to; the Circuits thread (Olah et al., "Zoom In",
Distill 2020; Voss et al., "Visualizing Weights", Distill 2021) reads *how* it is built from the
units before it. Two layers are rarely joined by one convolution: between ``mixed3a`` and
``mixed3b`` of InceptionV1 lie four branches (1x1; 1x1 then 3x3; 1x1 then 5x5; a max-pool then 1x1)
and a concatenation. With the nonlinearities replaced by their closest linear stand-ins (ReLU and
GELU by the identity, max-pooling by average-pooling) the whole path is one linear map, and its
kernel is the *expanded weights*: ``W[d, s, i, j]`` is how much upstream channel ``s`` at offset
``(i, j)`` in the window adds to downstream channel ``d`` at one position.

How it is computed (:func:`expanded_weights`): on a deep copy of the model (the user's is never
touched), ``src``'s output is replaced by a leaf tensor of zeros with ``C_dst`` copies in the batch;
copy ``i`` selects downstream channel ``i`` at the centre position, and one backward pass of the
sum gives every row at once: the gradient with respect to the leaf *is* the linear map, whatever
the leaf's value, once the map is linear. The window is the gradient's support (the receptive field
of the downstream unit in ``src``), so it is right for odd and even maps and strided paths alike;
if it reaches the border of the map, the input is made larger until it does not.

Caveat (the Circuits authors' own): expanded weights show the *linear* part of the path. Where the
ReLUs between the layers matter (a bottleneck unit that is mostly off), or where an upstream unit
excites through one branch and inhibits through another so that the two cancel, the map can
mislead; look at the heatmap, not only the norm.

>>> W = expanded_weights(model, "mixed3a", "mixed3b")      # (480, 256, 5, 5)
>>> for inp in top_inputs(model, "mixed3b:342", "mixed3a", k=8):
...     print(inp.channel, inp.sign, round(inp.norm, 3))
"""
from __future__ import annotations

import copy
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UsageError
from ..hooks import INPUT, capture, model_name, resolve

#: Activation functions replaced by the identity when linearizing (matched by function name, so
#: ``nn.ReLU``, ``F.relu``, ``torch.relu`` and ``x.relu()`` all count).
IDENTITY_STAND_INS = frozenset({"relu", "relu_", "relu6", "gelu", "silu", "leaky_relu", "leaky_relu_"})
#: Max-pools replaced by the average-pool of the same window, stride and padding.
POOL_STAND_INS = {"max_pool1d": F.avg_pool1d, "max_pool2d": F.avg_pool2d, "max_pool3d": F.avg_pool3d,
                  "adaptive_max_pool1d": F.adaptive_avg_pool1d, "adaptive_max_pool2d": F.adaptive_avg_pool2d,
                  "adaptive_max_pool3d": F.adaptive_avg_pool3d}
#: The input size the window search starts from, and how often it may double. 56 px is the
#: smallest that puts InceptionV1's mixed3a at 7 x 7, enough for the 5 x 5 field of mixed3b without
#: touching the border (the map's size is most of the cost); the hand-coded curves' 50 px field in
#: ``edges`` fits too.
START_SIZE, MAX_DOUBLINGS = 56, 4


# --- linear stand-ins --------------------------------------------------------------------------------

#: Where each stand-in activation takes ``inplace`` when it is passed by position.
_INPLACE_AT = {"relu": 1, "relu6": 1, "silu": 1, "leaky_relu": 2}


def _identity(name, args, kwargs):
    # An in-place activation returns its input; an out-of-place one a new tensor, so that a later
    # in-place op on the result cannot change the input (a residual branch may still read it).
    at = _INPLACE_AT.get(name)
    inplace = name.endswith("_") or bool(kwargs.get("inplace", False)) or (
        at is not None and len(args) > at and args[at] is True)
    return args[0] if inplace else args[0].clone()


def _avg_for_max(avg, input, kernel_size=None, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False, output_size=None):
    if output_size is not None or kernel_size is None:  # adaptive
        return None if return_indices else avg(input, output_size if output_size is not None else kernel_size)
    if return_indices or dilation not in (1, (1, 1), (1, 1, 1), [1, 1]):
        return None  # no average-pool equivalent: keep the max-pool
    return avg(input, kernel_size, stride, padding, ceil_mode, count_include_pad=False)


class Linearized(TorchFunctionMode):
    """Inside this mode ReLU-like activations are the identity and max-pools are average-pools.

    It works on the functions a model calls, so modules and functional calls (``F.relu`` inside a
    ``forward``) are covered alike and no module is edited. Padding with ``-inf`` (how a
    "SAME" max-pool keeps its padding from winning) becomes padding with 0, the value an
    average-pool's padding has.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in IDENTITY_STAND_INS and args and isinstance(args[0], torch.Tensor):
            return _identity(name, args, kwargs)
        if name in POOL_STAND_INS and args and isinstance(args[0], torch.Tensor):
            adaptive = name.startswith("adaptive")
            if adaptive:
                out = _avg_for_max(POOL_STAND_INS[name], args[0], output_size=args[1] if len(args) > 1 else
                                   kwargs.get("output_size"), return_indices=kwargs.get("return_indices", False))
            else:
                out = _avg_for_max(POOL_STAND_INS[name], *args, **kwargs)
            if out is not None:
                return out
        if func is F.pad and kwargs.get("value", args[3] if len(args) > 3 else None) == float("-inf"):
            kwargs = dict(kwargs, value=0.0)
            args = args[:3]
        return func(*args, **kwargs)


# --- feeding src -------------------------------------------------------------------------------------

class _Feed(nn.Module):
    """Stands in for the ``src`` module of the copy: records the shape of its output, or returns
    the leaf tensor that the gradient is taken against (first call only; a module called twice
    runs normally after that)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.leaf: Optional[torch.Tensor] = None
        self.shape: Optional[torch.Size] = None
        self.dtype = None
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.leaf is not None and self.calls == 1:
            return self.leaf
        out = self.inner(*args, **kwargs)
        if self.calls == 1:
            t = out if isinstance(out, torch.Tensor) else out[0]
            self.shape, self.dtype = t.shape, t.dtype
        return out


def _replace(root: nn.Module, target: nn.Module, new: nn.Module) -> int:
    """Put ``new`` wherever ``root`` holds ``target`` as a child; returns how many places."""
    n = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if child is target and parent is not new:
                setattr(parent, name, new)
                n += 1
    return n


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _dtype_of(model: nn.Module) -> torch.dtype:
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    return p.dtype if p is not None else torch.float32


def _prepare_copy(model: nn.Module, src: str, dst: str, device) -> Tuple[nn.Module, _Feed]:
    """A deep copy of ``model`` on ``device``, in eval mode, without weight gradients, with ``src``
    replaced by a :class:`_Feed`."""
    from ..models import pick_device
    from ..models.redirect import set_redirect

    if src == INPUT:
        raise UsageError(f"--from {INPUT}: expanded weights start at a layer, not the image; "
                         "name the first layer whose units you want as inputs")
    if src == dst:
        raise UsageError(f"src and dst are both {src!r}; give an earlier layer as src")
    from ..models.wrap import FeatvisModel, wrap
    # the path from src to dst never sees the image, so the net's input convention does not matter
    base = model if isinstance(model, FeatvisModel) else wrap(model, normalize=getattr(model, "featvis_normalize", None))
    resolve(base, [src, dst])  # a NotFound with close matches, before any copying
    device = pick_device(device)
    twin = copy.deepcopy(base).to(device).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    set_redirect(twin, False)
    target = resolve(twin, [src])[src]
    feed = _Feed(target)
    if _replace(twin, target, feed) == 0:
        raise UsageError(f"layer {src!r} of {model_name(base)} is the whole model; give a layer inside it")
    return twin, feed


# --- the expanded weights ---------------------------------------------------------------------------

def _support_box(grads: Sequence[torch.Tensor]) -> Optional[Tuple[int, int, int, int]]:
    """(top, bottom, left, right), inclusive, of where any gradient is non-zero; None if nowhere."""
    mask = None
    for g in grads:
        m = g.ne(0).flatten(0, -3).any(0)  # (H, W)
        mask = m if mask is None else mask | m
    if mask is None or not bool(mask.any()):
        return None
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _channels_arg(channels, n: int, dst: str) -> List[int]:
    if channels is None:
        return list(range(n))
    chans = [int(channels)] if isinstance(channels, int) else [int(c) for c in channels]
    bad = [c for c in chans if not 0 <= c < n]
    if bad:
        raise UsageError(f"channel {bad[0]} is not in layer {dst!r}, which has {n} channels (0-{n - 1})")
    if not chans:
        raise UsageError(f"no channels of {dst!r} asked for; give at least one, or channels=None for all")
    return chans


def _rows(twin: nn.Module, feed: _Feed, dst: str, chans: List[int], size: int, batch: int, device,
          linearize: bool, progress: bool) -> Tuple[List[torch.Tensor], int]:
    """Full-map gradients (n, C_src, H, W), one chunk of ``batch`` downstream channels at a time."""
    dtype = _dtype_of(twin)
    C, H, W = feed.shape[1:]
    grads = []
    image_batch = 1  # what runs before src does not depend on the leaf: batch 1 unless that fails
    chunks = [chans[i:i + batch] for i in range(0, len(chans), batch)]
    bar = None
    if progress and len(chunks) > 1:
        from ..progress import bar as progress_bar
        bar = progress_bar(total=len(chans), desc=f"expanded weights -> {dst}", unit="ch", file=sys.stderr)
    with capture(twin, [dst]) as run, Linearized() if linearize else nullcontext():
        for chunk in chunks:
            n = len(chunk)
            for attempt in (image_batch, n):
                leaf = torch.zeros(n, C, H, W, device=device, dtype=feed.dtype, requires_grad=True)
                feed.leaf, feed.calls = leaf, 0
                image = torch.full((attempt, 3, size, size), 0.5, device=device, dtype=dtype)
                try:
                    with torch.enable_grad():
                        out = run(image)[dst]
                    break
                except RuntimeError as e:
                    if attempt == n or "size" not in str(e).lower():
                        raise
                    image_batch = n  # something after src mixes in a pre-src tensor by batch (a cat)
            if feed.calls == 0:
                raise UsageError(f"layer {dst!r} comes before the src layer in the forward pass; "
                                 "give src as the earlier layer and dst as the later one")
            idx = torch.arange(n, device=device)
            ch = torch.as_tensor(chunk, device=device)
            if out.dim() == 4:
                sel = out[idx, ch, out.shape[2] // 2, out.shape[3] // 2]
            elif out.dim() == 2:
                sel = out[idx, ch]
            else:
                raise UsageError(f"layer {dst!r} gives shape {tuple(out.shape)}; expanded weights need "
                                 "(B, C, H, W) or (B, C) outputs")
            if not sel.requires_grad:
                raise UsageError(f"layer {dst!r} does not depend on the src layer; is src on the path to dst?")
            (g,) = torch.autograd.grad(sel.sum(), leaf)
            grads.append(g)
            feed.leaf = None
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    return grads, out.dim()


def expanded_weights(model: nn.Module, src: str, dst: str, channels=None, linearize: bool = True,
                     size: Optional[int] = None, batch: Optional[int] = None, device=None,
                     progress: bool = False) -> torch.Tensor:
    """The linear map from ``src``'s activations to one position of ``dst``: (C_dst, C_src, kh, kw).

    ``W[d, s, i, j]`` is how much channel ``s`` of ``src`` at row ``i``, column ``j`` of the window
    adds to channel ``d`` of ``dst`` at the centre of its map, through every path between them
    (branches and concatenations included). The window is the field of the downstream unit in
    ``src`` (where the gradient is non-zero, for any of the channels asked for); it is never cut by
    the border: the input is enlarged until the field fits inside the map.

    ``channels``: downstream channels (an int or a list; default all), in that order along dim 0.
    ``linearize``: replace ReLU, GELU, SiLU, ReLU6 and leaky ReLU by the identity and max-pools by
    average-pools (default), giving the map that does not depend on the input. With
    ``linearize=False`` they are kept and the map is the gradient at ``src = 0``: ReLUs then pass
    only where their input is positive at that point. Anything else non-linear (LRN, a sigmoid) is
    always taken at ``src = 0``.
    ``size``: the input size to start from (default 56 px; doubled up to 4 times while the field
    reaches the border). ``batch``: downstream channels per backward pass (default all at once).
    ``device``: where the copy runs (default: CUDA when present); the result is on that device.

    The model is deep-copied; ``model`` itself, its modules, flags and outputs are left as they were.
    """
    twin, feed = _prepare_copy(model, src, dst, device)
    device = _device_of(twin)
    size = int(size or START_SIZE)
    if size < 1:
        raise UsageError(f"size={size}: the input size must be a positive number of pixels")
    for doubling in range(MAX_DOUBLINGS + 1):
        # The shapes, from a plain forward pass up to dst (stopping there).
        feed.leaf, feed.calls = None, 0
        gray = torch.full((1, 3, size, size), 0.5, device=device, dtype=_dtype_of(twin))
        with torch.no_grad(), capture(twin, [dst]) as run:
            out = run(gray)[dst]
        if feed.calls == 0 or feed.shape is None:
            raise UsageError(f"layer {dst!r} comes before {src!r} in the forward pass of {model_name(twin)}; "
                             "give the earlier layer as src")
        if len(feed.shape) != 4:
            raise UsageError(f"layer {src!r} gives shape {tuple(feed.shape)}; expanded weights need a "
                             "(B, C, H, W) src layer")
        chans = _channels_arg(channels, out.shape[1], dst)
        grads, dst_dims = _rows(twin, feed, dst, chans, size, int(batch or len(chans)), device,
                                bool(linearize), progress)
        box = _support_box(grads)
        H, W = feed.shape[2:]
        if box is None:  # every path is zero (zero weights, or kept ReLUs that are all off)
            return torch.zeros(len(chans), feed.shape[1], 1, 1, device=device, dtype=grads[0].dtype)
        top, bottom, left, right = box
        touches = top == 0 or left == 0 or bottom == H - 1 or right == W - 1
        if dst_dims == 2 or not touches:
            return torch.cat([g[:, :, top:bottom + 1, left:right + 1] for g in grads])
        size *= 2
    raise UsageError(f"the field of {dst!r} in {src!r} still reaches the border of a {H}x{W} map at a "
                     f"{size // 2} px input (global pooling or attention between them?); "
                     "expanded weights need a local field")


# --- the strongest inputs ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Input:
    """One upstream channel of a unit, from :func:`top_inputs`.

    ``norm``: the Frobenius norm of its (kh, kw) expanded-weight map. ``sign``: ``"excitatory"``
    when the positive weights carry more of the squared norm than the negative ones (the sign of
    sum(w * |w|)), else ``"inhibitory"``; ``net``: the plain sum of the map (what a uniformly
    active upstream channel adds), which can be near 0 where excitation and inhibition cancel.
    ``weights``: the (kh, kw) map itself, on the CPU.
    """

    channel: int
    norm: float
    sign: str
    net: float
    weights: torch.Tensor

    @property
    def signed_norm(self) -> float:
        """``norm`` with the sign: positive for excitatory, negative for inhibitory."""
        return self.norm if self.sign == "excitatory" else -self.norm


def parse_unit(unit) -> Tuple[str, int]:
    """``"mixed3b:342"`` or ``("mixed3b", 342)`` -> ("mixed3b", 342) (read by :class:`featvis.units.Unit`);
    a neuron (``@x,y``) is refused."""
    from ..units import Unit
    u = Unit.parse(unit)
    if u.x is not None or u.y is not None:
        raise UsageError(f"unit {unit!r}: expanded weights are taken at the centre of the map; "
                         "give 'layer:channel' without '@x,y'")
    return u.layer, u.channel


def rank_inputs(weights: torch.Tensor, k: Optional[int] = None) -> List[Input]:
    """The upstream channels of one unit's (C_src, kh, kw) expanded weights, largest norm first
    (ties by channel), at most ``k``; channels whose weights are all zero are left out."""
    if weights.dim() != 3:
        raise ValueError(f"expected one unit's (C_src, kh, kw) weights, got shape {tuple(weights.shape)}")
    w = weights.detach().double().cpu()
    norms = w.flatten(1).norm(dim=1)  # (C_src,)
    energy = (w * w.abs()).flatten(1).sum(1)  # (C_src,) positive minus negative squared norm
    net = w.flatten(1).sum(1)
    # A channel with no path to the unit (all zero) is not an input, whatever k asks for.
    order = sorted((c for c in range(len(norms)) if norms[c] > 0), key=lambda c: (-float(norms[c]), c))
    k = len(order) if k is None else k
    return [Input(c, float(norms[c]), "excitatory" if energy[c] >= 0 else "inhibitory", float(net[c]),
                  weights[c].detach().float().cpu()) for c in order[:k]]


def top_inputs(model: nn.Module, dst_unit, src: str, k: int = 8, **kwargs) -> List[Input]:
    """The ``k`` channels of ``src`` with the largest expanded-weight norm into ``dst_unit``.

    ``dst_unit``: ``"mixed3b:342"`` or ``("mixed3b", 342)``. Each :class:`Input` says whether the
    channel is excitatory or inhibitory and holds its weight map. Keyword arguments go to
    :func:`expanded_weights` (``linearize``, ``size``, ``device``).

    >>> [(i.channel, i.sign) for i in top_inputs(model, "curves:2", "edges", k=3)]
    """
    layer, n = parse_unit(dst_unit)
    if int(k) < 1:
        raise UsageError(f"k={k}: ask for at least one input")
    W = expanded_weights(model, src, layer, channels=[n], **kwargs)  # (1, C_src, kh, kw)
    return rank_inputs(W[0], int(k))


__all__ = ["expanded_weights", "top_inputs", "rank_inputs", "parse_unit", "Input", "Linearized",
           "IDENTITY_STAND_INS", "POOL_STAND_INS"]
