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
        self._copies: Dict[Tuple[torch.device, torch.dtype, bool], torch.Tensor] = {}

    def like(self, other: torch.Tensor) -> torch.Tensor:
        """The tensor on ``other``'s device, in ``other``'s dtype (and, for 4-d tensors, in its
        memory format: a channels-last image gets a channels-last constant)."""
        nhwc = self.tensor.dim() == 4 and other.dim() == 4 and not other.is_contiguous() \
            and other.is_contiguous(memory_format=torch.channels_last)
        key = (other.device, other.dtype, nhwc)
        if key not in self._copies:
            copy = self.tensor.to(other.device, other.dtype)
            self._copies[key] = copy.contiguous(memory_format=torch.channels_last) if nhwc else copy
        return self._copies[key]

    @property
    def shape(self):
        return self.tensor.shape
