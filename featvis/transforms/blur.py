"""Blurring: a small smoothing kernel, as a transform and as the step of Lucid's blur regularizer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def box_blur(image: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Lucid's ``_tf_blur``: each channel convolved with a ``size`` x ``size`` kernel of weight 1
    inside and 0.5 on its border, divided by the kernel mass that falls on the image (so the edges
    are not darkened).

    >>> smooth = box_blur(images, 3)
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"blur size must be a positive odd number of pixels, got {size}")
    if size == 1:
        return image
    C = image.shape[1]
    k = torch.full((size, size), 0.5, device=image.device, dtype=image.dtype)
    k[1:-1, 1:-1] = 1.0
    weight = k.expand(C, 1, size, size)
    ones = torch.ones_like(image[:1, :1]).expand(1, C, -1, -1)
    blurred = F.conv2d(image, weight, padding=size // 2, groups=C)
    mass = F.conv2d(ones, weight, padding=size // 2, groups=C)  # (1, C, H, W)
    return blurred / mass


class Blur:
    """A fixed blur of every image (no randomness); not geometric, so it is not fused into warps."""

    #: draws no random numbers (a CUDA graph may capture it: see :mod:`featvis.step`)
    pure = True

    def __init__(self, size: int = 3):
        box_blur(torch.zeros(1, 1, 1, 1), size)  # validate now, not at the first step
        self.size = int(size)

    def __call__(self, image: torch.Tensor, rng=None) -> torch.Tensor:
        return box_blur(image, self.size)

    def __repr__(self):
        return f"blur({self.size})"


def blur(size: int = 3) -> Blur:
    """Blur each image before the model with Lucid's ``size`` x ``size`` kernel. The model then sees
    (and the gradient reaches the image through) a smoothed picture, which damps high-frequency
    noise, like Lucid's ``blur_input_each_step`` (see :func:`featvis.objectives.blur_input_each_step`
    for that regularizer itself).

    >>> transforms = featvis.transforms.compose(featvis.transforms.blur(3), *featvis.transforms.standard().transforms)
    """
    return Blur(size)
