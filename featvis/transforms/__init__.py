"""Differentiable random transforms applied to the image before the model.

A transform is a callable ``t(image, rng=None) -> image`` on (B,3,H,W); ``rng`` is a
:class:`featvis.rng.RandomSource` (one stream per image), a ``torch.Generator``, an int seed or
``None``. Every image of a batch draws its own random values, so a batch of 32 channels gets 32
independent jitters, exactly like 32 separate renders.

Geometric transforms (pad, jitter, scale, rotate) in a :func:`compose` are fused into one affine
warp per image, so the image is resampled once per step however many of them there are.
"""
from __future__ import annotations

import inspect

from typing import Callable, List, Optional

from .alpha import CollapseAlpha, collapse_alpha, composite, random_background
from .blur import blur, box_blur
from .geometric import Geometric, apply_warp, chain_inputs, chain_size, jitter, pad, random_rotate, random_scale, warp_chain
from ..rng import as_source, to_device


class NotCapturable(RuntimeError):
    """A transform draws random numbers outside the feed, so a CUDA graph cannot replay it."""


class Compose:
    """Transforms applied in order; runs of geometric ones are fused into one warp."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"transform {t!r} is not callable; expected image -> image")

    def __call__(self, image, rng=None):
        return self.run(image, as_source(rng, image.shape[0], image.device), _UPLOAD)

    def run(self, image, rng, feed, capturing: bool = False):
        """``self(image, rng)`` with every host-to-device input of the step (a warp's matrix)
        obtained as ``feed(make, device)``, ``make()`` computing it on the host from ``rng``'s
        draws. ``capturing``: raise :class:`NotCapturable` for a transform that draws by itself."""
        run: List[Geometric] = []
        for t in self.transforms:
            if isinstance(t, Geometric):
                run.append(t)
                continue
            if run:
                image, run = _warp(run, image, rng, feed), []
            if isinstance(t, CollapseAlpha):  # draws through the feed
                image = t.run(image, rng, feed)
                continue
            if capturing and _takes_rng(t) and not getattr(t, "pure", False):
                raise NotCapturable(f"transform {t!r} takes the random source and draws outside featvis's "
                                    "feed; a CUDA graph would replay its first draws forever")
            image = _call(t, image, rng)
        return _warp(run, image, rng, feed) if run else image

    def __repr__(self):
        return "compose(" + ", ".join(map(repr, self.transforms)) + ")"


def _warp(chain, image, rng, feed):
    B, size = image.shape[0], tuple(image.shape[-2:])
    M = feed(lambda: chain_inputs(chain, rng, B, size, image.dtype)[0], image.device)  # draws on the host
    return apply_warp(chain, image, M, chain_size(chain, B, size))


_UPLOAD = lambda make, device: to_device(make(), device)  # noqa: E731 -- the eager feed


def why_not_capturable(transforms) -> Optional[str]:
    """Why ``transforms`` cannot run in a captured CUDA graph (``None``: they can): each must be
    geometric, or draw nothing (``pure = True``, or take no random source)."""
    if not isinstance(transforms, Compose):
        return f"transforms {transforms!r} are not a featvis compose()"
    for t in transforms.transforms:
        if not isinstance(t, (Geometric, CollapseAlpha)) and _takes_rng(t) and not getattr(t, "pure", False):
            return f"transform {t!r} draws its own random numbers"
    return None


def run_transforms(transforms, image, rng, feed, capturing: bool = False):
    """``transforms(image, rng)`` through ``feed`` (see :meth:`Compose.run`); any other callable
    is called as is, and cannot be captured."""
    if isinstance(transforms, Compose):
        return transforms.run(image, rng, feed, capturing)
    if capturing:
        raise NotCapturable(f"transforms {transforms!r} are not a featvis compose(); a CUDA graph cannot feed their draws")
    return _call(transforms, image, rng)


def _takes_rng(t: Callable) -> bool:
    """Whether ``t`` accepts a second argument (the random source) or is a plain image -> image."""
    try:
        params = inspect.signature(t).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _call(t: Callable, image, rng):
    return t(image, rng) if _takes_rng(t) else t(image)


def compose(*transforms) -> Compose:
    """``compose(pad(12), jitter(8), ...)``: apply in order, fusing geometric runs into one warp."""
    if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
        transforms = transforms[0]
    return Compose(transforms)


# Lucid's `transform.standard_transforms` (lucid/optvis/transform.py): the facts, not the code.
STANDARD_SCALES = [1 + (i - 5) / 50.0 for i in range(11)]
STANDARD_ANGLES = list(range(-10, 11)) + 5 * [0]


def standard() -> Compose:
    """Lucid's standard transforms: pad 12 (constant 0.5), jitter 8, scale 0.9..1.1 in steps of
    0.02, rotate -10..10 degrees (plus five extra 0s), jitter 4; fused into one warp.

    One difference from Lucid, by design: Lucid's scale resizes the canvas, which a batch of images
    with different scales cannot share; here the zoom is about the centre on a fixed canvas (the
    size Lucid's canvas has at scale 1: a 128 px image becomes 140 px).
    """
    return compose(pad(12), jitter(8), random_scale(STANDARD_SCALES), random_rotate(STANDARD_ANGLES), jitter(4))


def identity() -> Compose:
    """No transforms (useful for tests and for evaluating a finished image)."""
    return compose()


__all__ = ["pad", "jitter", "random_scale", "random_rotate", "compose", "standard", "identity",
           "blur", "box_blur", "collapse_alpha", "composite", "random_background",
           "Compose", "Geometric", "STANDARD_SCALES", "STANDARD_ANGLES"]
