"""How :func:`featvis.render` runs the model, and the device-specific ways to run it faster.

The model runs only up to the last layer the objective reads (:func:`featvis.hooks.capture`), with
frozen weights. On top of that, each guarded by device type and each with a plain fallback:

- ``precision``: autocast of the model alone to bf16 or fp16 (the image and the param stay fp32);
- cuDNN autotuning (``torch.backends.cudnn.benchmark``) on CUDA, where shapes are fixed for a run;
- channels-last memory format where it measured faster (:data:`CHANNELS_LAST`);
- ``compile``: ``torch.compile`` of the model truncated after the last layer read (an fx graph, see
  :func:`truncate`), falling back to the plain model with a warning when tracing or compiling fails.
"""
from __future__ import annotations

import os
import re
import warnings
import weakref
from contextlib import ExitStack, contextmanager
from typing import Callable, Dict, Iterable, Iterator, Optional, Union

import torch
from torch import fx, nn

from .hooks import as_maps, capture, model_layers, resolve, split_call
from .models.layout import split_token

#: ``render(precision=...)``: the autocast dtype of the model (None: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Run the model in channels-last (NHWC) memory format, per device type. CUDA: cuDNN's NHWC
#: convolutions are its fast path (tensor cores); not measured here (no GPU). CPU: measured faster
#: with torch 2.14's oneDNN on 2 Xeon cores, forward + backward to the input: InceptionV1 up to
#: mixed3a / mixed4a / mixed5b at 224 px, batch 1: 4.5% / 4% / 9.5% less time; mixed4a batch 16: 8%;
#: a CIFAR ResNet-20 at 32 px, batch 10: 15%.
CHANNELS_LAST = {"cuda": True, "cpu": True}


def check_precision(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` ("fp32" -> None); a clear error for anything else."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@contextmanager
def cudnn_autotune(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` on for the block when ``device`` is CUDA; restored after.

    A render runs hundreds of steps at one input shape, so the one-off cost of trying cuDNN's
    algorithms on the first step pays for itself. Not when ``enabled`` is False (deterministic
    renders): which algorithm wins the timing can differ between runs, and so can the rounding.
    """
    if device.type != "cuda" or not enabled:
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextmanager
def memory_format(model: nn.Module, channels_last: bool) -> Iterator[None]:
    """The model's 4-d weights in channels-last format for the block (when asked); afterwards each
    tensor that was in the default format is put back in it."""
    if not channels_last:
        yield
        return
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.dim() == 4]
    was_contiguous = [t.is_contiguous() for t in tensors]
    model.to(memory_format=torch.channels_last)  # in place: same Parameter objects, new .data
    try:
        yield
    finally:
        with torch.no_grad():
            for t, contiguous in zip(tensors, was_contiguous):
                if contiguous:
                    t.data = t.data.contiguous()


#: ``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS (NVIDIA's cuBLAS docs, "Results
#: reproducibility"; PyTorch's randomness notes): a fixed workspace per stream.
CUBLAS_WORKSPACE = ":4096:8"
_NONDETERMINISTIC = re.compile(r"^(\S+) does not have a deterministic implementation")


class NondeterministicError(RuntimeError):
    """An op of a ``deterministic=True`` render has no deterministic kernel on this device."""


def deterministic_mode(device: torch.device, mode: Union[bool, str] = True):
    """A context for ``render(deterministic=mode)``: ``True`` makes every op deterministic (an op
    without a deterministic kernel raises :class:`NondeterministicError`, naming it), ``"warn"``
    warns instead, ``False`` does nothing. Sets ``torch.use_deterministic_algorithms``,
    ``cudnn.deterministic`` (cudnn.benchmark off) and, on CUDA, ``CUBLAS_WORKSPACE_CONFIG`` when it
    is unset; all restored afterwards."""
    if mode not in (True, False, "warn"):
        raise ValueError(f"deterministic={mode!r}: expected True, False or 'warn'")
    return _deterministic(torch.device(device), mode) if mode else _nothing()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _deterministic(device: torch.device, mode) -> Iterator[None]:
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              cudnn.deterministic, cudnn.benchmark)
    env_set = device.type == "cuda" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if env_set:  # read by cuBLAS when a stream's workspace is made: set before the first matmul
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=mode == "warn")
    # Filling every torch.empty with NaN only makes reads of uninitialized memory repeatable (a bug
    # in any case); it costs a memset per allocation.
    torch.utils.deterministic.fill_uninitialized_memory = False
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    except RuntimeError as err:
        found = _NONDETERMINISTIC.search(str(err))
        if found is None:
            raise
        raise NondeterministicError(
            f"{found.group(1)} has no deterministic {device.type.upper()} kernel, and this render asked for "
            "deterministic results; pass deterministic=False (CLI: --no-deterministic) to run it anyway "
            "(the same seed may then give slightly different images), or deterministic='warn' to be told "
            "and go on") from err
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]
        if env_set:
            del os.environ["CUBLAS_WORKSPACE_CONFIG"]


class _Tracer(fx.Tracer):
    """Traces through containers; every module without children is one opaque call (so custom
    layers such as autograd Functions need not be traceable). Records the node of each call of
    each module (``relu#2`` is a module's second call), containers included."""

    def __init__(self):
        super().__init__()
        self.outputs: Dict[str, list] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return next(m.children(), None) is None

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        if isinstance(out, fx.Proxy):
            self.outputs.setdefault(self.path_of_module(m), []).append(out.node)
        return out


def truncate(model: nn.Module, layers: Iterable[str]) -> fx.GraphModule:
    """``model`` cut after the last of ``layers``: a ``GraphModule`` whose ``forward(images)``
    returns ``{layer: output}`` and runs nothing the outputs do not need. No hooks.

    Raises whatever ``torch.fx`` raises for a model whose ``forward`` it cannot trace (data-dependent
    control flow, for instance). Outputs other than the last are copies, as in :func:`capture`, so
    that a later in-place op cannot change them.
    """
    names = model_layers(layers)
    if not names:
        raise ValueError("truncate() needs at least one layer")
    modules = resolve(model, names)
    paths = {id(m): p for p, m in model.named_modules()}
    tracer = _Tracer()
    graph = tracer.trace(model)
    found = {}
    for name in names:
        calls, k = tracer.outputs.get(paths.get(id(modules[name])), []), split_call(split_token(name)[0])[1]
        node = calls[k - 1] if len(calls) >= k else None
        if node is None:
            raise RuntimeError(f"layer {name!r} is not called in the traced forward of {type(model).__name__}")
        found[name] = node
    order = {node: i for i, node in enumerate(graph.nodes)}
    last = max(found.values(), key=order.__getitem__)
    outputs = {}
    for name, node in found.items():
        if node is last:
            outputs[name] = node
            continue
        with graph.inserting_after(node):
            outputs[name] = graph.call_method("clone", (node,))
    graph.erase_node(next(n for n in graph.nodes if n.op == "output"))
    graph.output(outputs)
    prefix = fx.GraphModule(model, graph, class_name=f"Truncated{type(model).__name__}")
    prefix.graph.eliminate_dead_code()  # everything after the last layer read
    prefix.delete_all_unused_submodules()
    prefix.recompile()
    return prefix


class ModelRunner:
    """``runner(images) -> {layer: float32 output}``: the model up to the layers read, with the
    speed-ups chosen for the device. Use inside :func:`model_runner`."""

    def __init__(self, model, layers, device, precision, compiled, stack: ExitStack):
        self.model, self.layers = model, model_layers(layers)
        dtype = check_precision(precision)
        # No cast cache: it lives for one forward anyway, and cached casts made while a CUDA graph
        # is captured would be freed under the graph (PyTorch's CUDA-graph notes ask for it off).
        self._autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False)
        self.channels_last = CHANNELS_LAST.get(device.type, False)
        self.compiled, self._tried = compiled, False
        self._stack = stack
        self._hooked = None

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def plain(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The uncompiled model, hooked, stopping after the last layer read."""
        if self.compiled is not None:  # the compiled graph calls the same modules: no hooks left on
            with capture(self.model, self.layers) as hooked, self._autocast:
                return {k: v.float() for k, v in hooked(self._prepare(images)).items()}
        if self._hooked is None:
            self._hooked = self._stack.enter_context(capture(self.model, self.layers))
        with self._autocast:
            acts = self._hooked(self._prepare(images))
        return {k: v.float() for k, v in acts.items()}

    def __call__(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.compiled is None or not self.layers:
            return self.plain(images)
        try:
            if not self._tried:
                self._try_compiled(images)
            with self._autocast:
                acts = as_maps(self.model, self.compiled(self._prepare(images)), tuple(images.shape[-2:]))
        except Exception as err:  # noqa: BLE001 -- any failure of the compiler means: run plain
            warnings.warn(f"torch.compile of {type(self.model).__name__} failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running the model uncompiled",
                          RuntimeWarning, stacklevel=2)
            _forget_compiled(self.model, self.compiled)
            self.compiled = None
            return self.plain(images)
        return {k: v.float() for k, v in acts.items()}

    def _try_compiled(self, images: torch.Tensor) -> None:
        """One forward and backward on a copy of the first input, so that a compiler failure in
        either shows up here (where it can fall back) and not in the caller's backward."""
        x = images.detach().clone().requires_grad_(images.requires_grad)
        with self._autocast:
            acts = self.compiled(self._prepare(x))
        total = sum(v.float().sum() for v in acts.values())
        if x.requires_grad and total.requires_grad:
            torch.autograd.grad(total, x, allow_unused=True)
        self._tried = True


#: Compiled prefixes by model, then by (layers, backend, device, autocast dtype, channels-last): the
#: renders of a whole layer, batch after batch, compile once (compiling InceptionV1 up to mixed4a
#: takes ~40 s on 2 CPU cores), and a model moved to another device, precision or memory format
#: gets its own compiled prefix rather than code specialized for the first.
_COMPILED: "weakref.WeakKeyDictionary[nn.Module, Dict[tuple, Callable]]" = weakref.WeakKeyDictionary()


def compile_prefix(model: nn.Module, layers: Iterable[str], backend: Union[bool, str] = True, device=None,
                   precision: str = "fp32", channels_last: bool = False):
    """``torch.compile`` of :func:`truncate` (``model`` up to ``layers``), kept for later renders
    of the same model, layers, backend, device, precision and memory format; ``None``, with a
    warning, where the model cannot be traced. Compilation itself happens on the first call (and
    again for a new input shape)."""
    layers = tuple(model_layers(layers))
    if not layers:
        return None
    cache = _COMPILED.setdefault(model, {})
    key = cache_key(layers, backend, device, precision, channels_last)
    if key in cache:
        return cache[key]
    try:
        prefix = truncate(model, layers)
    except Exception as err:  # noqa: BLE001 -- an untraceable model runs plain
        warnings.warn(f"cannot compile {type(model).__name__}: torch.fx could not trace it "
                      f"({type(err).__name__}: {err}); running it uncompiled", RuntimeWarning, stacklevel=3)
        return None
    kwargs = {} if backend is True else {"backend": backend}
    cache[key] = torch.compile(prefix, dynamic=False, **kwargs)
    return cache[key]


def cache_key(layers, backend, device, precision: str, channels_last: bool) -> tuple:
    """What a compiled prefix is specialized for; ``device`` normalized (``cuda`` = ``cuda:0``)."""
    return (tuple(layers), backend, _normal_device(device), check_precision(precision), bool(channels_last))


def _normal_device(device) -> Optional[torch.device]:
    if device is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return device


def _forget_compiled(model: nn.Module, compiled) -> None:
    cache = _COMPILED.get(model, {})
    for key in [k for k, v in cache.items() if v is compiled]:
        del cache[key]


@contextmanager
def model_runner(model: nn.Module, layers: Iterable[str], device, precision: str = "fp32",
                 compile: Union[bool, str] = False, autotune: bool = True) -> Iterator[ModelRunner]:
    """Run ``model`` up to ``layers`` for the duration of a ``with`` block.

    ``precision``: "fp32", "bf16" or "fp16" (autocast of the model only). ``compile``: ``True`` for
    ``torch.compile`` with its default backend, or a backend name ("eager", "aot_eager", ...).
    cuDNN autotuning (unless ``autotune=False``) and channels-last follow the device (:data:`CHANNELS_LAST`). Everything is
    restored when the block ends: hooks removed, memory format and cuDNN flag as they were.
    """
    device = torch.device(device)
    check_precision(precision)
    with ExitStack() as stack:
        stack.enter_context(cudnn_autotune(device, autotune))
        stack.enter_context(memory_format(model, CHANNELS_LAST.get(device.type, False)))
        channels_last = CHANNELS_LAST.get(device.type, False)
        compiled = compile_prefix(model, layers, compile, device, precision, channels_last) if compile else None
        yield ModelRunner(model, layers, device, precision, compiled, stack)
