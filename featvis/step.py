"""One optimization step as a function of static input buffers, and its capture in a CUDA graph.

A render step on a GPU at small batches is launch-bound: hundreds of small kernels (param, warp,
model, objective, backward, Adam) whose launches cost more than their work. A CUDA graph records
the whole step once and replays it as one launch. Its inputs must then live at fixed addresses:
everything a step takes from the host (the warp's matrix, an RGBA background's noise: the only
per-step random draws, all made on the host from the per-image generators of :mod:`featvis.rng`)
comes through a *feed*, ``feed(make, device) -> device tensor``, where ``make()`` computes the
host tensor from this step's draws:

- :func:`upload` (eager): ``make()`` copied to the device, a new tensor each step;
- :class:`StaticFeed`: the first step allocates one buffer per input and remembers each ``make``;
  every later step first calls the remembered ``make``s in order (the same draws, in the same
  order, as the eager loop) and copies their results into the buffers. Off CUDA (mode
  ``"static"``) the step then runs eagerly on those buffers (how the CPU tests check the scheme);
  on CUDA it replays the captured graph.

:class:`Stepper` runs the steps: the first ``WARMUP`` (and Lucid's ReLU-redirect steps, which
change the model's backward) eagerly on a side stream, then captures one step and replays it.
Any failure to capture falls back to the eager loop with a warning, from the same state.
"""
from __future__ import annotations

import warnings
from typing import Callable, List, Optional

import torch

from .rng import to_device

#: Eager steps before a capture: cuDNN/cuBLAS pick their algorithms and allocate workspaces,
#: autograd and the optimizer make their state (PyTorch's CUDA-graph notes warm up on a side
#: stream before capturing; 3 steps as in their whole-network example).
WARMUP = 3


def upload(make: Callable[[], torch.Tensor], device) -> torch.Tensor:
    """The eager feed: this step's host tensor, queued for the device."""
    return to_device(make(), device)


class StaticFeed:
    """A feed whose tensors stay at the same addresses from step to step (see the module doc)."""

    def __init__(self, deferred: bool = False):
        self.makers: List[Callable[[], torch.Tensor]] = []
        self.buffers: List[torch.Tensor] = []
        #: while recording a CUDA graph: this step's host values, copied in after the capture
        #: (a copy from the host cannot be part of the graph)
        self.pending: Optional[List[torch.Tensor]] = [] if deferred else None
        self.recording, self._next = True, 0
        #: transforms that draw outside the feed raise (see :meth:`featvis.transforms.Compose.run`)
        self.capturing = True

    def __call__(self, make, device) -> torch.Tensor:
        if self.recording:  # first step: one buffer per input
            host = make()
            buf = torch.empty(host.shape, dtype=host.dtype, device=device)
            if self.pending is None:
                buf.copy_(host)
            else:
                self.pending.append(host)
            self.makers.append(make)
            self.buffers.append(buf)
            return buf
        buf = self.buffers[self._next]
        self._next += 1
        return buf

    def freeze(self) -> None:
        """After the recording step: later steps read the buffers."""
        self.recording, self._next = False, 0
        if self.pending:
            for host, buf in zip(self.pending, self.buffers):
                _copy(buf, host)
        self.pending = None

    def refill(self) -> None:
        """This step's inputs into the buffers, in the order the step asks for them."""
        for make, buf in zip(self.makers, self.buffers):
            host = make()
            if host.shape != buf.shape or host.dtype != buf.dtype:
                raise RuntimeError(f"a step input changed shape ({tuple(buf.shape)} -> {tuple(host.shape)}); "
                                   "static buffers need fixed shapes")
            _copy(buf, host)
        self._next = 0


def _copy(buf: torch.Tensor, host: torch.Tensor) -> None:
    if buf.is_cuda:  # pinned, so the copy is queued like a kernel and the host does not wait
        buf.copy_(host.pin_memory(), non_blocking=True)
    else:
        buf.copy_(host)


class Stepper:
    """``stepper(i) -> (image, values)``: step ``i`` of the loop, run by ``step(feed)``.

    ``mode``: ``"eager"`` (a fresh upload per input), ``"static"`` (static buffers, run eagerly:
    the graph's data path without a graph, what ``"graph"`` becomes off CUDA), ``"graph"``
    (static buffers, captured once in a CUDA graph after ``eager_steps`` eager steps, then
    replayed). ``why_not``: a reason the step cannot be captured (then: eager, with a warning). A
    failed capture warns and carries on eagerly, with this step's draws as already made.
    """

    def __init__(self, step: Callable, device: torch.device, mode: str = "eager", eager_steps: int = WARMUP,
                 why_not: Optional[str] = None):
        if mode not in ("eager", "static", "graph"):
            raise ValueError(f"mode={mode!r}: expected eager, static or graph")
        if mode == "graph" and device.type != "cuda":
            mode = "static"
        if mode != "eager" and why_not:
            warnings.warn(f"cannot capture the render step ({why_not}); running it eagerly", RuntimeWarning, stacklevel=3)
            mode = "eager"
        self.step, self.device, self.mode = step, device, mode
        self.eager_steps = max(int(eager_steps), 1) if mode == "graph" else 0
        self.feed: Optional[StaticFeed] = None
        self.graph = None
        self._out = None
        self._side = None

    def __call__(self, i: int):
        if self.mode == "eager" or i < self.eager_steps:
            return self._eager(upload)
        if self.mode == "static":
            if self.feed is None:
                self.feed = StaticFeed()
                out = self.step(self.feed)
                self.feed.freeze()
                return out
            self.feed.refill()
            return self.step(self.feed)
        if self.graph is None:
            return self._capture_and_replay()
        self.feed.refill()
        self.graph.replay()
        return self._out

    def _eager(self, feed):
        if self.mode != "graph":
            return self.step(feed)
        # Before a capture: on a side stream, as PyTorch's CUDA-graph notes ask.
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            out = self.step(feed)
        torch.cuda.current_stream(self.device).wait_stream(self._side)
        return out

    def _capture_and_replay(self):
        """Record one step (nothing runs while recording; its inputs are drawn and kept), put this
        step's inputs in the buffers, and replay it."""
        feed, graph = StaticFeed(deferred=True), torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph):
                out = self.step(feed)
        except Exception as err:  # noqa: BLE001 -- any capture failure: carry on eagerly
            warnings.warn(f"CUDA graph capture of the render step failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running the steps eagerly",
                          RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize(self.device)
            self.mode = "eager"
            # this step's draws are made: use them (drawing again would shift every later step)
            return self.step(_Made(feed.pending or []))
        feed.freeze()
        self.feed, self.graph, self._out = feed, graph, out
        graph.replay()
        return out


class _Made:
    """A feed that hands out inputs already drawn, then draws as :func:`upload` does."""

    def __init__(self, made: List[torch.Tensor]):
        self.made = list(made)

    def __call__(self, make, device) -> torch.Tensor:
        return to_device(self.made.pop(0) if self.made else make(), device)
