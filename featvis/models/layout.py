"""How a layer lays out its output: channels first (B, C, H, W), channels last (B, H, W, C), or
tokens (B, T, D) of a vision transformer; and the one conversion of each into the map that
objectives, top-k and the listing read: (B, C, H, W), or (B, C) for a layer without positions.

A layer's layout is *declared* (``featvis.wrap(net, layouts={"blocks.*": tokens(16)})``, or by
the model family's builder: timm's ViTs, ConvNeXt's channels-last MLPs) or follows from the
output's rank (4-d: PyTorch's channels first; 2-d: one vector per image). A 3-d output is never
guessed: it is read as tokens only where the model declares its token grid (patch size and the
named tokens before the patches) and the token count matches that grid for the input size;
otherwise reading it is an error that says how to declare it (Lucent's channel objective
silently treats the token axis of a ViT as channels).

In a tokens layout the patch tokens become a map of the patch grid (``@x,y`` is the patch at
column x, row y) and each named token (``cls``, ``reg0``...) is the pseudo-layer
``LAYER@NAME``, one vector of D features per image (the unit ``LAYER:CHANNEL@cls``).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..errors import UsageError
from .state import frozen

#: The mark between a layer and a named token: ``blocks.11@cls``.
TOKEN_MARK = "@"

KINDS = ("channels_first", "channels_last", "tokens", "vector", "unknown")


@dataclass(frozen=True)
class Layout:
    """A layer's output layout. ``kind``: one of :data:`KINDS`. For ``tokens``: ``patch`` (pixels
    per patch, (height, width)) and ``prefix``, the names of the tokens before the patch tokens
    (``("cls",)`` for a ViT with a class token, ``()`` for none); ``padded``: the image is padded
    to whole patches (timm's ``dynamic_img_pad``), so the grid rounds up. ``unknown``: an output
    that is not a map (an attention's (B, heads, T, d)); reading it is an error."""

    kind: str
    patch: Optional[Tuple[int, int]] = None
    prefix: Tuple[str, ...] = ()
    padded: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UsageError(f"layout {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.kind == "tokens" and (self.patch is None or min(self.patch) < 1):
            raise UsageError("a tokens layout needs the patch size in pixels, e.g. featvis.models.tokens(16)")

    def grid(self, image_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The patch grid (rows, columns) for an input of ``image_hw`` pixels."""
        if self.padded:
            return -(-image_hw[0] // self.patch[0]), -(-image_hw[1] // self.patch[1])
        return image_hw[0] // self.patch[0], image_hw[1] // self.patch[1]

    def describe(self) -> str:
        if self.kind != "tokens":
            return self.kind.replace("_", " ")
        names = "+".join(self.prefix)
        return f"tokens ({names + ' + ' if names else ''}{self.patch[0]}x{self.patch[1]}px patches)"


CHANNELS_FIRST = Layout("channels_first")
CHANNELS_LAST = Layout("channels_last")
VECTOR = Layout("vector")
UNKNOWN = Layout("unknown")


def tokens(patch: Union[int, Sequence[int]], prefix: Sequence[str] = ("cls",), padded: bool = False) -> Layout:
    """A (B, T, D) token layout: ``prefix`` named tokens, then one token per ``patch``-pixel patch
    in row-major order (timm's and torchvision's ViTs, DeiT, DINO; ``prefix=("cls", "reg0", ...)``
    for register tokens; ``prefix=()`` for none). ``padded=True`` where the model pads the image to
    whole patches (the grid rounds up; else down).

    >>> model = featvis.wrap(my_vit, layouts={"blocks.*": featvis.models.tokens(16)})
    """
    p = (int(patch), int(patch)) if isinstance(patch, int) else tuple(int(v) for v in patch)
    names = tuple(str(n) for n in prefix)
    bad = [n for n in names if not n.isidentifier()]
    if bad or len(set(names)) != len(names):
        raise UsageError(f"token names {names}: each must be a distinct identifier such as cls or reg0")
    return Layout("tokens", p, names, bool(padded))


def as_layout(value) -> Layout:
    """A :class:`Layout` from itself or a kind's name (``"channels_last"``)."""
    if isinstance(value, Layout):
        return value
    if value in ("channels_first", "channels_last", "vector", "unknown"):
        return Layout(value)
    raise UsageError(f"layout {value!r}: give channels_first, channels_last, vector, or featvis.models.tokens(PATCH)")


def split_token(name: str) -> Tuple[str, Optional[str]]:
    """``"blocks.11@cls"`` -> ``("blocks.11", "cls")``; a plain layer name -> ``(name, None)``."""
    base, mark, token = name.rpartition(TOKEN_MARK)
    if mark and base and token.isidentifier():
        return base, token
    return name, None


def declared(layouts: Mapping[str, Layout], name: str) -> Optional[Layout]:
    """The layout ``layouts`` declares for layer ``name``: an exact name first, then the first glob
    (``blocks.*``) that matches."""
    if name in layouts:
        return layouts[name]
    for pattern, layout in layouts.items():
        if fnmatch.fnmatchcase(name, pattern):
            return layout
    return None


def layout_of(model, name: str, shape: Sequence[int], image_hw: Tuple[int, int]) -> Layout:
    """The layout of layer ``name`` (output ``shape`` with the batch dimension, for an input of
    ``image_hw`` pixels): declared by ``model`` (its ``layouts``), else 4-d (and more) channels
    first, 2-d (and less) a vector, 3-d tokens where ``model.tokens`` declares the grid and the count fits it; anything
    else raises :class:`~featvis.errors.UsageError` that says how to declare it."""
    base = name.split("#")[0]
    layout = declared(getattr(model, "layouts", None) or {}, base)
    if layout is None:
        if len(shape) >= 4:  # PyTorch's convention: (B, C, H, W) (and (B, C, D, H, W))
            layout = CHANNELS_FIRST
        elif len(shape) <= 2:
            layout = VECTOR
        elif len(shape) == 3 and getattr(model, "tokens", None) is not None:
            layout = model.tokens
            if shape[1] != len(layout.prefix) + _count(layout.grid(image_hw)):
                raise UsageError(_undeclared(model, name, shape, image_hw, layout))
        else:
            raise UsageError(_undeclared(model, name, shape, image_hw, None))
    return layout


def _count(grid: Tuple[int, int]) -> int:
    return grid[0] * grid[1]


def _undeclared(model, name, shape, image_hw, tokens_layout) -> str:
    mname = getattr(model, "name", None) or type(model).__name__
    shown = "x".join(map(str, shape[1:]))
    if tokens_layout is not None:
        h, w = tokens_layout.grid(image_hw)
        other = Layout("tokens", tokens_layout.patch, tokens_layout.prefix, not tokens_layout.padded)
        if shape[1] == len(other.prefix) + _count(other.grid(image_hw)):  # the other rounding fits
            fix = f"declare tokens(..., padded={other.padded}): the model {'pads' if other.padded else 'does not pad'} " \
                  "the image to whole patches"
        else:
            fix = ("pick a layer whose output is the token sequence (see: featvis layers MODEL), or declare its "
                   "layout: featvis.wrap(net, layouts={NAME: ...})")
        return (f"layer {name!r} of {mname} gives {shown} per image, which is not {len(tokens_layout.prefix)} named "
                f"token(s) + a {h}x{w} grid of {tokens_layout.patch[0]}px patches for a {image_hw[0]}x{image_hw[1]} "
                f"image; {fix}")
    return (f"layer {name!r} of {mname} gives a {len(shape)}-d output ({shown} per image) whose layout featvis does not "
            "guess (channels? tokens?); declare it: featvis.wrap(net, layouts={" + repr(name) + ": "
            "featvis.models.tokens(PATCH)}) for a (B, tokens, D) sequence, or 'channels_first' / 'channels_last'")


def to_map(t: torch.Tensor, layout: Layout, image_hw: Tuple[int, int], name: str,
           token: Optional[str] = None) -> torch.Tensor:
    """``t`` in the layout objectives read: (B, C, H, W) for a map (tokens: the patch grid, D
    channels), (B, C) for a vector or for the named ``token`` of a tokens layout."""
    if token is not None:
        if layout.kind != "tokens":
            raise UsageError(f"{name}{TOKEN_MARK}{token}: {name!r} is a {layout.describe()} layer, which has no named "
                             "tokens; @NAME picks a token (cls) of a transformer layer, @x,y a position")
        if token not in layout.prefix:
            have = ", ".join(layout.prefix) or "none"
            raise UsageError(f"{name}{TOKEN_MARK}{token}: no token {token!r} in {name!r} (its named tokens: {have}); "
                             "use @x,y for a patch")
        return t[:, layout.prefix.index(token)]  # (B, D)
    if layout.kind == "channels_first" or layout.kind == "vector":
        return t
    if layout.kind == "unknown":
        raise UsageError(f"layer {name!r} gives {'x'.join(map(str, t.shape[1:]))} per image, which is not a map of "
                         "channels over the image (neither channels first nor last); pick another layer "
                         "(see: featvis layers MODEL), or declare its layout: featvis.wrap(net, layouts={NAME: ...})")
    if layout.kind == "channels_last":
        if t.dim() < 3:
            raise UsageError(f"layer {name!r} is declared channels_last but gives shape {tuple(t.shape)}")
        return t.movedim(-1, 1)  # (B, H, W, C) -> (B, C, H, W), a view
    h, w = layout.grid(image_hw)
    P = len(layout.prefix)
    if t.dim() != 3 or t.shape[1] != P + h * w:
        raise UsageError(f"layer {name!r} gives shape {tuple(t.shape)}, not (B, {P} + {h}x{w} tokens, D) for a "
                         f"{image_hw[0]}x{image_hw[1]} image with {layout.patch[0]}px patches; check its declared "
                         "layout (featvis.models.tokens)")
    return t[:, P:].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)  # (B, D, h, w)


def detect_layouts(model, image_hw: Tuple[int, int] = (224, 160), in_channels: int = 3) -> Dict[str, Layout]:
    """The layouts of 4-d outputs that are not channels first, found by one forward pass of a
    non-square image: an output whose dimensions 1 and 2 follow the image's height and width (and
    whose 2 and 3 do not) is channels last (timm's ConvNeXt runs its MLPs on (B, H, W, C)); one
    where neither pair does (an attention's (B, heads, T, d)) is ``unknown``. Returns
    ``{layer: layout}`` to declare; a model that cannot take the probe gives ``{}``."""
    H, W = image_hw
    assert H != W, "the probe must be non-square to tell height from width"
    found: Dict[str, Layout] = {}
    named = model.named_layers() if hasattr(model, "named_layers") else dict(model.named_modules())
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in found:
                _, a, b, c = output.shape
                if _follows(b, c, H, W) or b == c == 1:  # channels first (a 1x1 map: pooled)
                    return
                found[name] = CHANNELS_LAST if _follows(a, b, H, W) else UNKNOWN
        return hook

    for name, module in named.items():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        with frozen(model), torch.no_grad():  # eval mode: the probe must not move BatchNorm's statistics
            model(torch.full((1, in_channels, H, W), 0.5, device=device))
    except Exception:  # noqa: BLE001 -- a model that only takes its own size: nothing detected
        return {}
    finally:
        for h in handles:
            h.remove()
    return found


def _follows(h: int, w: int, H: int, W: int) -> bool:
    """Whether an h x w map is the H x W image at one stride: h/w is H/W, up to the rounding of a
    strided map (each side off by at most one step: |h W - w H| <= max(H, W))."""
    if h < 1 or w < 1 or h == w:
        return False
    return abs(h * W - w * H) <= max(H, W)


__all__ = ["Layout", "tokens", "as_layout", "layout_of", "to_map", "split_token", "declared", "detect_layouts",
           "CHANNELS_FIRST", "CHANNELS_LAST", "VECTOR", "UNKNOWN", "TOKEN_MARK"]
