"""``layers(model)``: what can be hooked, with types and output shapes, so nobody guesses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from ..hooks import named_layers
from .state import frozen
from .wrap import as_model


@dataclass(frozen=True)
class LayerInfo:
    """One hookable layer. ``block``: a whole block's output (a residual, ConvNeXt or inception
    block: the layers usually visualized); ``aliases``: other names for the same module."""

    name: str
    type: str
    channels: Optional[int]
    shape: Optional[Tuple[int, ...]]  # output shape for one image, without the batch dimension
    block: bool = False
    aliases: Tuple[str, ...] = ()


def layers(model, size: int = 224) -> List[LayerInfo]:
    """Every hookable module of ``model`` with its type, output channels and output shape.

    Runs one forward pass on a gray ``size`` x ``size`` image. Modules that do not run in
    ``forward`` (or return no tensor) are listed with ``shape=None``. A module reachable under
    several names is listed once, under its first name, with the others as ``aliases``.
    """
    model = as_model(model)
    table, aliases = {}, {}
    first = {}  # id(module) -> its first name
    for name, module in named_layers(model).items():
        if id(module) in first:
            aliases.setdefault(first[id(module)], []).append(name)
        else:
            first[id(module)] = name
            table[name] = module
    blocks = set(model.block_layers()) if hasattr(model, "block_layers") else set()
    shapes = {}
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if name not in shapes and isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])
        return hook

    for name, module in table.items():
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        with frozen(model), torch.no_grad():
            model(torch.full((1, 3, size, size), 0.5, device=device))
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, module in table.items():
        shape = shapes.get(name)
        out.append(LayerInfo(name, type(module).__name__, shape[0] if shape else None, shape,
                             block=name in blocks, aliases=tuple(aliases.get(name, ()))))
    return out
