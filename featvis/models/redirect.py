"""Redirected ReLU: Lucid's trick so that a unit that is off at the start still gets gradient.

A ReLU passes no gradient where its input is negative, so a unit that never fires on the first
random image never starts to. For the first few steps of an optimization a :class:`ReLU` here can
let gradient through where it would push the input *up* (never further down), and only for the
images (and, in a concatenation, the branches) through which the ordinary ReLU passes nothing at
all. The forward pass is an ordinary ReLU throughout. Source of the rule: Lucid's
``lucid/misc/redirected_relu_grad.py`` (which also applies it for the first 16 steps).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _RedirectedReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, splits):
        ctx.save_for_backward(x)
        ctx.splits = splits
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        off = x < 0
        relu_grad = grad.masked_fill(off, 0)
        # The loss is minimized, so a positive gradient on an off unit would push it further down.
        redirected = grad.masked_fill(off & (grad > 0), 0)
        chunks = relu_grad.split(list(ctx.splits), 1) if ctx.splits else (relu_grad,)
        # (B, C): does any ordinary gradient reach this image's branch of the tensor?
        passes = torch.cat([c.flatten(1).ne(0).any(1, keepdim=True).expand(-1, c.shape[1]) for c in chunks], 1)
        passes = passes.view(*passes.shape, *([1] * (x.dim() - 2)))
        return torch.where(passes, relu_grad, redirected), None


class ReLU(nn.Module):
    """``max(x, 0)``, whose backward is redirected while :attr:`redirect` is on (see the module doc).

    ``splits``: channel counts of the branches when the input is a concatenation (an inception
    block), so that each branch is judged on its own, as Lucid's per-branch ReLUs are.
    """

    def __init__(self, splits: Optional[Sequence[int]] = None):
        super().__init__()
        self.splits = tuple(splits) if splits else None
        self.redirect = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.redirect and torch.is_grad_enabled() and x.requires_grad:
            if self.splits is not None and sum(self.splits) != x.shape[1]:
                raise ValueError(f"ReLU splits {self.splits} do not add up to the input's {x.shape[1]} channels")
            return _RedirectedReLUFn.apply(x, self.splits)
        return F.relu(x)

    def extra_repr(self) -> str:
        return f"splits={self.splits}" if self.splits else ""


def set_redirect(model: nn.Module, on: bool) -> None:
    """Turn redirection on or off for every featvis :class:`ReLU` in ``model`` (others are untouched)."""
    for m in model.modules():
        if isinstance(m, ReLU):
            m.redirect = bool(on)


@contextmanager
def relu_redirection(model: nn.Module) -> Iterator[Callable[[int], None]]:
    """For an optimization loop: yields ``at(step)``, which redirects the ReLUs of ``model`` while
    ``step < model.redirect_steps`` (0, i.e. never, for a model without the attribute).
    Redirection is off again when the block ends, on error too.

    >>> with relu_redirection(model) as at:
    ...     for step in range(steps):
    ...         at(step)
    """
    steps = int(getattr(model, "redirect_steps", 0) or 0)
    state = {"on": False}

    def at(step: int) -> None:
        on = step < steps
        if on != state["on"]:
            set_redirect(model, on)
            state["on"] = on

    try:
        yield at
    finally:
        if state["on"]:
            set_redirect(model, False)
