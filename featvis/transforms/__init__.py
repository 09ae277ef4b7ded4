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

from typing import Callable, List

from .alpha import collapse_alpha, composite, random_background
from .blur import blur, box_blur
from .geometric import Geometric, jitter, pad, random_rotate, random_scale, warp_chain
from ..rng import as_source


class Compose:
    """Transforms applied in order; runs of geometric ones are fused into one warp."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"transform {t!r} is not callable; expected image -> image")

    def __call__(self, image, rng=None):
        rng = as_source(rng, image.shape[0], image.device)
        run: List[Geometric] = []
        for t in self.transforms:
            if isinstance(t, Geometric):
                run.append(t)
                continue
            if run:
                image, run = warp_chain(run, image, rng), []
            image = _call(t, image, rng)
        return warp_chain(run, image, rng) if run else image

    def __repr__(self):
        return "compose(" + ", ".join(map(repr, self.transforms)) + ")"


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
