"""Penalties and priors on the image (the pseudo-layer ``"input"``) or on a layer."""
from __future__ import annotations

import numbers
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..hooks import INPUT
from ..transforms.blur import box_blur
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


class _Reference:
    """A constant (a number) or a reference image, matched to what it is compared with."""

    def __init__(self, constant):
        if isinstance(constant, numbers.Number):
            self.image, self.value, self.label = None, float(constant), "" if constant == 0 else f"{constant:g}"
        else:
            from ..param.base import image_tensor
            self.image, self.value, self.label = image_tensor(constant), None, "reference"
        self._cache: Dict[Tuple, torch.Tensor] = {}

    def diff(self, x: torch.Tensor) -> torch.Tensor:
        if self.image is None:
            return x - self.value
        ref = self.image
        if x.dim() != 4:
            raise ValueError(f"a reference image is compared with images (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] == 4 and ref.shape[1] == 3:  # an RGBA image against an RGB reference: colour only
            x = x[:, :3]
        if ref.shape[1] != x.shape[1] or ref.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"reference image of shape {tuple(ref.shape)} cannot be compared with images of "
                             f"shape {tuple(x.shape)}: give one image (or one per image) with {x.shape[1]} channels")
        key = (tuple(x.shape[-2:]), x.device, x.dtype)
        if key not in self._cache:
            if tuple(ref.shape[-2:]) != key[0]:
                ref = F.interpolate(ref, size=key[0], mode="bilinear", align_corners=False, antialias=True)
            self._cache = {key: ref.to(x.device, x.dtype)}  # keep one: the size rarely changes
        return x - self._cache[key]


def _args(ref: _Reference, layer: str) -> str:
    return ", ".join(a for a in (ref.label, "" if layer == INPUT else layer) if a)


def l1(constant=0.0, layer: str = INPUT, batch=None) -> Objective:
    """Mean absolute distance of the image (or a layer) from ``constant``: subtract it to pull towards it.

    ``constant`` is a number, or a reference image (tensor, PIL image or array in [0, 1]; resized
    to the image if needed).

    >>> obj = channel("mixed4a", 476) - 0.5 * l1(0.5)    # pull towards mid-gray
    """
    ref = _Reference(constant)

    @objective([layer], f"l1({_args(ref, layer)})", batch)
    def fn(acts):
        return ref.diff(acts[layer]).abs().flatten(1).mean(1)

    return fn


def l2(constant=0.0, layer: str = INPUT, epsilon: float = 1e-6, batch=None) -> Objective:
    """Root-mean-square distance of the image (or a layer) from ``constant``: subtract it as a penalty.

    ``constant`` is a number, or a reference image (tensor, PIL image or array in [0, 1]; resized
    to the image if needed; an RGBA image is compared by its colour): with ``render(init=image)``
    this is feature accentuation, a unit made stronger while the image stays close to the photo.
    ``epsilon`` keeps the square root differentiable at zero, as in Lucid's L2.

    >>> photo = PIL.Image.open("dog.png")
    >>> obj = channel("layer3", 7) - 2.0 * l2(photo)
    >>> result = featvis.render(model, obj, init=photo)
    """
    ref = _Reference(constant)

    @objective([layer], f"l2({_args(ref, layer)})", batch)
    def fn(acts):
        return (ref.diff(acts[layer]).pow(2).flatten(1).mean(1) + epsilon).sqrt()

    return fn


def blur_input_each_step(size: int = 3, batch=None) -> Objective:
    """Lucid's blur regularizer (Nguyen et al. 2015): half the mean squared difference between the
    image and a blurred copy of it that is held fixed (no gradient). Subtract it: each step then
    pulls every pixel towards its blurred value, as if the image were blurred a little each step.
    A mean rather than Lucid's sum, so its weight does not depend on the image size.

    >>> obj = channel("mixed4a", 476) - 10.0 * blur_input_each_step()
    """
    @objective([INPUT], "blur_input_each_step()", batch)
    def fn(acts):
        x = acts[INPUT]
        with torch.no_grad():
            target = box_blur(x, size)
        return 0.5 * (x - target).pow(2).flatten(1).mean(1)

    return fn


def alpha_mean(batch=None) -> Objective:
    """Mean opacity of an RGBA image (a param made with ``alpha=True``): subtract it to clear the
    parts of the image the objective does not need (see :func:`featvis.recipes.transparent`).

    >>> obj = channel("mixed4a", 476) - 0.5 * alpha_mean()
    """
    @objective([INPUT], "alpha_mean()", batch)
    def fn(acts):
        x = acts[INPUT]
        if x.shape[1] != 4:
            raise ValueError(f"alpha_mean() needs RGBA images (B, 4, H, W), got {x.shape[1]} channels; "
                             "make the param with alpha=True, e.g. param.fourier(128, alpha=True)")
        return x[:, 3].flatten(1).mean(1)

    return fn
