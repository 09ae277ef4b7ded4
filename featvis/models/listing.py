"""``layers(model)``: what can be hooked, with types and output shapes, so nobody guesses; and
``activations(model, images, layers)``: those layers' outputs, for plain inference."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from ..errors import UsageError, one_line
from ..hooks import CALL_MARK, capture, named_layers
from .layout import TOKEN_MARK, layout_of, to_map
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
    #: how the raw output is laid out (:mod:`featvis.models.layout`): "channels first", "channels last",
    #: "tokens (cls + 16x16px patches)", "vector", or "unknown" (a 3-d output nobody declared);
    #: ``channels`` and ``shape`` are of the map objectives read (a transformer's (D, rows, columns))
    layout: str = "channels first"


def layers(model, size: int = 224) -> List[LayerInfo]:
    """Every hookable module of ``model`` with its type, output channels and output shape.

    Runs one forward pass on a gray ``size`` x ``size`` image (with the model's input channels).
    Shapes are those objectives read (:mod:`featvis.models.layout`): a transformer block's
    (B, tokens, D) output is listed as D channels on the patch grid, and each of its named tokens
    as a row ``NAME@cls`` of D channels; a 3-d output whose layout is not declared has layout
    "unknown" and no channels. Modules that do not run in
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
    shapes = {}  # name -> [(layout, map shape, named tokens) of each call]
    handles = []

    def hook_for(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, []).append(_read_as(model, name, output, (size, size)))
        return hook

    for name, module in table.items():
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        with frozen(model), torch.no_grad():
            model(torch.full((1, input_channels(model), size, size), 0.5, device=device))
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, module in table.items():
        calls = shapes.get(name) or [("channels first", None, ())]
        for k, (layout, shape, named) in enumerate(calls, 1):
            # A module that forward calls several times (a Bottleneck's relu) is one layer per call.
            full = name if k == 1 else f"{name}{CALL_MARK}{k}"
            out.append(LayerInfo(full, type(module).__name__, shape[0] if shape else None, shape,
                                 block=name in blocks and k == len(calls),
                                 aliases=tuple(aliases.get(name, ())) if k == 1 else (), calls=len(calls), layout=layout))
            out.extend(LayerInfo(f"{full}{TOKEN_MARK}{t}", "token", shape[0], shape[:1], layout=f"token {t}")
                       for t in named)
    return out


def input_channels(model) -> int:
    """The channels ``model`` takes (a featvis model's ``in_channels``; 3 otherwise)."""
    return int(getattr(model, "in_channels", 3) or 3)


def _read_as(model, name: str, output: torch.Tensor, image_hw) -> tuple:
    """(layout description, the shape objectives read per image, the named tokens) of one output."""
    try:
        layout = layout_of(model, name, tuple(output.shape), image_hw)
        shape = tuple(to_map(output, layout, image_hw, name).shape[1:])
    except UsageError:
        return "unknown", None, ()
    return layout.describe(), shape, layout.prefix if layout.kind == "tokens" else ()


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
        out = activations(model, torch.full((1, input_channels(model), size, size), 0.5, device=device), [layer])[layer]
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


def probe_spatial(model, layer: str, size: int, device, needs: str, model_name: str) -> tuple:
    """:func:`probe_layer` for a command that needs a spatial map: (C, H, W), else one line saying
    what ``needs`` it (e.g. "an atlas needs") and where to look for another layer."""
    shape = probe_layer(model, layer, size, device)
    if len(shape) != 3:
        raise UsageError(f"layer {layer!r} gives shape {shape}, no spatial map; {needs} a convolutional "
                         f"layer (C, H, W) (see: featvis layers {model_name})")
    return shape


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
    odd = any(li.layout not in ("channels first", "vector") for li in table)  # a layout column only where it says something
    shape_width = max(len(r[3]) for r in rows + [head])
    for r, li in zip([head] + rows, [None] + table):
        layout = ("layout" if li is None else li.layout) if odd else ""
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{shape_width if odd else 0}}"
              f"{'  ' + layout if odd else ''}".rstrip())
    if any(li.calls > 1 for li in table):
        print("\nNAME#k: the k-th call of a module that forward calls more than once (NAME alone is its first call)")
    print(f"\nlayer:channel@x,y: x is the column, y the row of the map shown (its size for --size {args.size} images)")
    if any(li.layout.startswith("tokens") for li in table):
        print("tokens: channel = one feature over the patch tokens, shown as their grid (rows x columns); "
              "layer:channel@cls reads the class token (the rows NAME@cls)")
    if any(li.layout == "unknown" for li in table):
        print("unknown: a 3-d output whose layout the model does not declare; declare it to read it "
              "(featvis.wrap(net, layouts=...))")
    if any(li.block for li in table):
        print("\n* a block output (a residual, ConvNeXt or inception block, or a conv stage): the usual layers to visualize")
    return 0
