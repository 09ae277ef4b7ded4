"""Recording layer outputs by name, and stopping the forward pass once they are all in.

``capture(model, names)`` is the only place featvis registers hooks (``featvis.activations``, in
:mod:`featvis.models.listing`, is plain inference on top of it). Hooks exist only inside its
``with`` block, only on the modules that were asked for, and are removed when the block ends, on
error too.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Mapping, Tuple

import torch
from torch import nn

from .errors import NotFound
from .models.layout import layout_of, split_token, to_map

#: The pseudo-layer that names the image itself (the param's output, before transforms).
INPUT = "input"


def model_layers(names: Iterable[str]) -> List[str]:
    """The names that are modules of the model: each once, in the order given, without
    :data:`INPUT` (the image, which the caller supplies). The one clean-up of a list of layer names
    (hooks and accel both take lists that objectives built)."""
    return [n for n in dict.fromkeys(names) if n != INPUT]


class _StopForward(Exception):
    """Raised inside a hook to abandon the rest of the forward pass."""


def named_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """Every hookable module of ``model`` by name.

    A model may define ``named_layers()`` itself (featvis's wrapped and zoo models do, so that the
    wrapper adds no prefix and so that aliases such as Lucid's ``mixed4a`` resolve); any other
    module is addressed by its PyTorch module path (``layer3.1``, ``features.5``).
    """
    own = getattr(model, "named_layers", None)
    if callable(own):
        return dict(own())
    return {name: m for name, m in model.named_modules() if name}


#: ``layer1.0.relu#2``: the second call of a module that ``forward`` calls more than once (a ResNet
#: Bottleneck's ``relu`` runs three times: after bn1, after bn2, and on the block's output).
CALL_MARK = "#"


def split_call(name: str) -> Tuple[str, int]:
    """``"layer1.0.relu#3"`` -> ``("layer1.0.relu", 3)``; a name without ``#k`` is call 1."""
    base, mark, k = name.rpartition(CALL_MARK)
    if mark and k.isdigit() and int(k) >= 1 and base:
        return base, int(k)
    return name, 1


def model_name(model: nn.Module) -> str:
    """The name to show for ``model`` in messages: its zoo name, else its class name."""
    return getattr(model, "name", None) or type(model).__name__


def _layers_hint(mname: str) -> str:
    """Where to look up the layers: ``featvis layers NAME`` only for a name the command line opens
    (a zoo or plugin model, a ``file.py:function``); a net wrapped in Python has only ``featvis.layers``."""
    from .models.registry import _REGISTRY
    if mname in _REGISTRY or (":" in mname and mname.rpartition(":")[0].endswith(".py")):
        return f"featvis layers {mname}, or featvis.layers(model) in Python"
    return "featvis.layers(model)"


def resolve(model: nn.Module, names: Iterable[str]) -> Dict[str, nn.Module]:
    """Map each layer name to its module, raising a helpful error for a name that is not there.
    ``NAME#k`` is the k-th call of NAME, ``NAME@cls`` a named token of a transformer layer
    (:mod:`featvis.models.layout`): both the module NAME."""
    table = named_layers(model)
    found = {}
    for full in names:
        name, _ = split_token(full)
        base, _ = split_call(name)
        if name in table or base in table:
            found[full] = table[name] if name in table else table[base]
            continue
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        mname = model_name(model)
        raise NotFound(f"no layer {name!r} in {mname}{hint} (see: {_layers_hint(mname)})")
    return found


def as_maps(model: nn.Module, outputs: Mapping[str, torch.Tensor], image_hw) -> Dict[str, torch.Tensor]:
    """Each layer's output in the layout objectives read (:func:`featvis.models.layout.to_map`):
    (B, C, H, W) maps (a transformer's patch tokens on their grid, channels-last maps moved to
    channels first) and (B, C) vectors (``NAME@cls``: that token's features). ``image_hw``: the
    size of the image the model was given."""
    out = {}
    for name, t in outputs.items():
        layer, token = split_token(name)
        out[name] = to_map(t, layout_of(model, layer, tuple(t.shape), image_hw), image_hw, layer, token)
    return out


def _first_tensor(output, name):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; hook a submodule instead")


class Capture:
    """Runs a model and returns the outputs of the requested layers (see :func:`capture`)."""

    def __init__(self, model: nn.Module, modules: Mapping[str, nn.Module]):
        self.model = model
        self.modules = dict(modules)
        self.outputs: Dict[str, torch.Tensor] = {}
        self._handles = []
        self._calls: Dict[str, int] = {}
        self.stopped_early = False

    def _hook(self, name):
        _, want = split_call(split_token(name)[0])  # ``relu#2``: record the module's second call in each forward

        def hook(module, inputs, output):
            calls = self._calls[name] = self._calls.get(name, 0) + 1
            if name in self.outputs or calls != want:
                return
            out = _first_tensor(output, name)
            done = len(self.outputs) + 1 == len(self.modules)
            # Later in-place ops (ReLU(inplace=True) in torchvision's ResNets) would change a stored
            # reference, so keep a copy; the last layer needs none because nothing runs after it.
            self.outputs[name] = out if done else out.clone()
            if done:
                raise _StopForward
        return hook

    def _attach(self):
        # Two names can alias one module (``mixed4a`` and ``mixed4a_relu``): one hook per name.
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _detach(self):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __call__(self, *args, **kwargs) -> Dict[str, torch.Tensor]:
        """Run the model on the given inputs; returns ``{layer: output}`` for the requested layers."""
        self.outputs, self._calls = {}, {}
        self.stopped_early = False
        if not self.modules:
            return {}
        try:
            self.model(*args, **kwargs)
        except _StopForward:
            self.stopped_early = True
        missing = [n for n in self.modules if n not in self.outputs]
        few = [n for n in missing if self._calls.get(n)]
        if few:
            base, k = split_call(few[0])
            raise NotFound(f"no layer {few[0]!r} in {model_name(self.model)}: {base} runs {self._calls[few[0]]} "
                           f"time(s) per forward pass, not {k} (see: {_layers_hint(model_name(self.model))})")
        if missing:
            raise RuntimeError(
                f"layer(s) {', '.join(missing)} never ran in the forward pass of {model_name(self.model)}; "
                "a module that forward() does not call cannot be hooked"
            )
        out, self.outputs = self.outputs, {}
        images = args[0] if args else next(iter(kwargs.values()), None)
        return as_maps(self.model, out, tuple(images.shape[-2:]))


@contextmanager
def capture(model: nn.Module, layer_names: Iterable[str]) -> Iterator[Capture]:
    """Hook the named layers of ``model`` for the duration of a ``with`` block.

    Inside the block, calling the returned object runs the model and returns ``{name: output}``;
    the forward pass stops as soon as every requested layer has produced its output, so later
    layers never run. The pseudo-layer ``"input"`` is ignored here (the caller supplies it).

    >>> with capture(model, ["layer2"]) as run:
    ...     acts = run(images)          # {"layer2": tensor}

    Raises ``KeyError`` naming close matches for a layer that is not in the model.
    """
    names = model_layers(layer_names)
    cap = Capture(model, resolve(model, names))
    cap._attach()
    try:
        yield cap
    finally:
        cap._detach()
