"""The user's model comes back as it was: every flag featvis touches is recorded and restored.

:func:`frozen` is what every featvis function that runs a model uses (render, evaluate, layers,
receptive_field, topk): for the block, the model is in eval mode with no weight gradients (and on
``device`` if one is given); afterwards, on success and on error alike, each submodule's own
train/eval flag, each parameter's ``requires_grad``, and each parameter's and buffer's device and
memory format are what they were. Each submodule is restored on its own (``model.train(flag)``
would push the top module's flag down onto children that had their own, e.g. a BatchNorm kept in
eval inside a training model).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn


def _layout(t: torch.Tensor) -> torch.memory_format:
    """The memory format a tensor is in (channels-last only for a 4-d tensor that is not also contiguous)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if t.dim() == 5 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.preserve_format


class ModelState:
    """A record of a module tree's modes, gradient flags, devices and memory formats."""

    def __init__(self, model: nn.Module):
        self.modes: List[Tuple[nn.Module, bool]] = [(m, m.training) for m in model.modules()]
        self.params: List[Tuple[nn.Parameter, bool, torch.device, torch.memory_format]] = [
            (p, p.requires_grad, p.device, _layout(p)) for p in model.parameters()]
        self.buffers: List[Tuple[nn.Module, str, torch.device, torch.memory_format]] = [
            (m, name, b.device, _layout(b)) for m in model.modules() for name, b in m._buffers.items() if b is not None]

    def restore(self) -> None:
        """Put every recorded flag, device and memory format back (in place: same Parameter objects)."""
        for module, mode in self.modes:
            module.training = mode  # not .train(): that recurses and may be overridden
        with torch.no_grad():
            for p, grad, device, fmt in self.params:
                if p.device != device or (fmt != torch.preserve_format and _layout(p) != fmt) \
                        or (fmt == torch.preserve_format and not p.is_contiguous() and p.dim() >= 4):
                    target = torch.contiguous_format if fmt == torch.preserve_format else fmt
                    p.data = p.data.to(device).contiguous(memory_format=target)
                if p.requires_grad != grad:
                    p.requires_grad_(grad)
            for m, name, device, fmt in self.buffers:
                b = m._buffers.get(name)
                if b is None:
                    continue
                if b.device != device or (fmt != torch.preserve_format and _layout(b) != fmt) \
                        or (fmt == torch.preserve_format and not b.is_contiguous() and b.dim() >= 4):
                    target = torch.contiguous_format if fmt == torch.preserve_format else fmt
                    m._buffers[name] = b.to(device).contiguous(memory_format=target)


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every submodule's mode, gradient flags, devices and memory formats after the block."""
    state = ModelState(model)
    try:
        yield model
    finally:
        state.restore()


@contextmanager
def frozen(model: nn.Module, device: Optional[torch.device] = None) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients for the block (on ``device`` if given); every flag,
    device and memory format restored afterwards, also on error (see the module docstring)."""
    with preserved(model):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if device is not None:
            model.to(device)
        yield model
