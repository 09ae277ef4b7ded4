"""``layers(model)``: what can be hooked, with types and output shapes, so nobody guesses; and
``activations(model, images, layers)``: those layers' outputs, for plain inference."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from ..errors import UsageError, one_line
from ..hooks import CALL_MARK, capture, named_layers
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
    calls: int = 1  # how often forward calls the module; each call k > 1 is listed as ``name#k``


def layers(model, size: int = 224) -> List[LayerInfo]:
    """Every hookable module of ``model`` with its type, output channels and output shape.

    Runs one forward pass on a gray ``size`` x ``size`` image. Modules that do not run in
    ``forward`` (or return no tensor) are listed with ``shape=None``. A module reachable under
    several names is listed once, under its first name, with the others as ``aliases``. A module
    that ``forward`` calls more than once (a ResNet Bottleneck's ``relu`` runs three times) is
    listed once per call: ``layer1.0.relu`` (the first), ``layer1.0.relu#2``, ``layer1.0.relu#3``;
    objectives, ``capture`` and ``featvis render`` take those names.
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
    shapes = {}  # name -> [output shape of each call]
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, []).append(tuple(output.shape[1:]))
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
        calls = shapes.get(name) or [None]
        for k, shape in enumerate(calls, 1):
            # A module that forward calls several times (a Bottleneck's relu) is one layer per call.
            out.append(LayerInfo(name if k == 1 else f"{name}{CALL_MARK}{k}", type(module).__name__,
                                 shape[0] if shape else None, shape, block=name in blocks and k == len(calls),
                                 aliases=tuple(aliases.get(name, ())) if k == 1 else (), calls=len(calls)))
    return out


def activations(model, images: torch.Tensor, layers: Iterable[str] | str) -> Dict[str, torch.Tensor]:
    """Outputs of ``layers`` for a batch of [0,1] ``images``, without gradients.

    ``model`` is wrapped with ImageNet normalization unless it is already a featvis model (see
    :func:`featvis.wrap`). The forward pass stops after the last requested layer.
    """
    if isinstance(layers, str):
        layers = [layers]
    model = as_model(model)
    device = next(iter(model.parameters()), torch.empty(0)).device
    with torch.no_grad(), capture(model, layers) as run:
        return run(images.to(device))


def probe_layer(model, layer: str, size: int, device) -> tuple:
    """The output shape of ``layer`` for one ``size``² image, (C, ...), with one-line errors."""
    try:
        out = activations(model, torch.full((1, 3, size, size), 0.5, device=device), [layer])[layer]
    except KeyError as e:
        raise UsageError(e.args[0]) from e
    except RuntimeError as e:
        first = one_line(e)
        memory = any(w in str(e).lower() for w in ("memory", "alloc"))
        fix = "try a smaller --size" if memory else "if the layer's input shrank to nothing, try a larger --size; else another layer"
        raise UsageError(f"cannot run {getattr(model, 'name', 'the model')} up to {layer!r} at --size {size} ({first}); "
                         f"{fix}") from e
    if out.dim() < 2:
        raise UsageError(f"layer {layer!r} gives no channels (output shape {tuple(out.shape)}); pick another layer (see: featvis layers)")
    return tuple(out.shape[1:])


def layers_command(args) -> int:
    """``featvis layers MODEL``: the table of :func:`layers`."""
    from .open import open_model
    model = open_model(args.model, args.weights, "cpu")
    try:
        table = layers(model, args.size)
    except RuntimeError as e:
        raise UsageError(f"cannot run {args.model} at --size {args.size} ({str(e).splitlines()[0][:200]}); try a larger --size") from e
    rows = [(("* " if li.block else "  ") + li.name, li.type, "-" if li.channels is None else str(li.channels),
             "-" if li.shape is None else "x".join(map(str, li.shape))) for li in table]
    head = ("  layer", "type", "channels", f"shape at {args.size}px")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    for r in [head] + rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    if any(li.calls > 1 for li in table):
        print("\nNAME#k: the k-th call of a module that forward calls more than once (NAME alone is its first call)")
    print(f"\nlayer:channel@x,y: x is the column, y the row of the map shown (its size for --size {args.size} images)")
    if any(li.block for li in table):
        print("\n* a block output (a residual, ConvNeXt or inception block, or a conv stage): the usual layers to visualize")
    return 0
