"""Constant tensors that the render loop needs on the image's device, copied there once."""
from __future__ import annotations

from typing import Dict, Tuple

import torch


class DeviceCopies:
    """``tensor`` and its copies on other devices and dtypes, each made on first use.

    Objectives and params run every step; ``tensor.to(cuda)`` each step would be a host-to-GPU
    copy from pageable memory each step, which makes the host wait for the GPU.
    """

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self._copies: Dict[Tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, other: torch.Tensor) -> torch.Tensor:
        """The tensor on ``other``'s device, in ``other``'s dtype."""
        key = (other.device, other.dtype)
        if key not in self._copies:
            self._copies[key] = self.tensor.to(other.device, other.dtype)
        return self._copies[key]

    @property
    def shape(self):
        return self.tensor.shape
