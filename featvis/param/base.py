"""The contract every image parameterization follows."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..rng import RandomSource


def size_hw(w: int, h: Optional[int]) -> Tuple[int, int]:
    h = w if h is None else h
    if int(w) != w or int(h) != h or w < 1 or h < 1:
        raise ValueError(f"image size must be positive integers, got w={w}, h={h}")
    return int(h), int(w)


class ImageParam(nn.Module):
    """An ``nn.Module`` whose ``forward()`` returns the images (B, 3, H, W) in [0, 1].

    Its trainable tensors are its parameters; ``.to(device)`` is its only device handling.
    ``reset(rng)`` re-draws the initial values from a :class:`~featvis.rng.RandomSource` (one
    stream per image), which is how ``render(seed=...)`` makes a run reproducible.
    """

    batch: int
    height: int
    width: int

    def reset(self, rng: RandomSource) -> None:
        raise NotImplementedError

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width

    def extra_repr(self):
        return f"batch={self.batch}, h={self.height}, w={self.width}"
