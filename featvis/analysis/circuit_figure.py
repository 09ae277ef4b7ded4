"""``featvis circuit MODEL LAYER:CHANNEL --from SRC``: a unit, its strongest inputs, and the weights between.

The figure of the Circuits thread (Olah et al., "Zoom In"; Cammarata et al., "Curve Circuits"):
the downstream unit's visualization, then its ``--top`` upstream units (largest expanded-weight
norm, see :mod:`featvis.circuits`), each with its visualization above its weight heatmap. Every
heatmap uses one symmetric colour scale, ``[-max |w|, +max |w|]`` over the units shown: red
excites, blue inhibits, white is zero; each is labelled with its sign and norm. The
visualizations are rendered in one batch, or read from a render folder (``--from-dir``) that
already holds them as ``<layer>/<channel>.png``.

``--record DIR`` writes the circuit into a render folder for the site generator::

    DIR/<layer>/circuits/<channel>.json
        {"unit": "mixed3b:342", "from": "mixed3a",
         "inputs": [{"channel": 12, "norm": 0.53, "sign": "excitatory",
                     "heatmap": "mixed3b/circuits/342_from_mixed3a_12.png"}, ...],
         "made_by": {"model": "inceptionv1", "weights": {"spec": "default", "sha256": "..."}}}
    DIR/<layer>/circuits/<channel>_from_<src>_<c>.png      each input's heatmap (same colour scale)

Paths in the JSON are relative to DIR; every file is written atomically, through the folder's owner
(:class:`featvis.jobs.folder.RenderFolder`) under its lock; a folder of another network refuses it.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ..errors import NotFound, UsageError, device_argument, weights_argument
from ..figures.circuit import HEATMAP_MIN_PX, RECORD_PX, colour_bar, heatmap

if TYPE_CHECKING:  # torch and PIL are imported where they are used: `featvis --help` stays fast
    from .circuits import Input


def _label(inp: "Input") -> str:
    return f"{'+' if inp.sign == 'excitatory' else '-'}{inp.norm:.3g}"


class CircuitFigure(tuple):
    """What :func:`circuit_figure` returns: the pair ``(image, inputs)`` (``image, inputs =
    circuit_figure(...)``), the figure as a PIL image and the inputs it shows, which in Jupyter
    shows the figure and a table of the inputs. ``unit`` and ``src`` name what it is of."""

    def __new__(cls, image, inputs: List["Input"], unit: str = "", src: str = ""):
        self = super().__new__(cls, (image, inputs))
        self.unit, self.src = unit, src
        return self

    @property
    def image(self):
        return self[0]

    @property
    def inputs(self) -> List["Input"]:
        return self[1]

    def _repr_png_(self) -> bytes:
        from ..display import png_bytes
        return png_bytes(self.image)

    def _repr_html_(self) -> str:
        import html

        from ..display import data_uri
        rows = "".join(f"<tr><td>{html.escape(self.src)}:{inp.channel}</td><td>{html.escape(inp.sign)}</td>"
                       f"<td>{inp.norm:.4g}</td><td>{inp.net:.4g}</td></tr>" for inp in self.inputs)
        head = "<tr><th>input</th><th>sign</th><th>norm</th><th>net</th></tr>"
        return (f'<div class="featvis" style="font-family: sans-serif"><div style="font-weight: 600">'
                f"{html.escape(self.unit)} from {html.escape(self.src)}: its {len(self.inputs)} strongest inputs</div>"
                f'<img src="{data_uri(self.image)}" width="{self.image.width}" height="{self.image.height}" '
                f'alt="circuit of {html.escape(self.unit)}"><table style="font-size: 12px">{head}{rows}</table></div>')


def _visualizations(model, units: Sequence[Tuple[str, int]], size: Optional[int], steps: int, seed: int, device,
                    progress: bool, from_dir: Optional[Path], preset: Optional[str] = None) -> List:
    """One image per unit: read from ``from_dir/<layer>/<channel>.png`` where it is there, the
    others rendered together in one batch (image i maximizes unit i), with ``preset``'s recipe
    (:mod:`featvis.presets`) or a plain Fourier image (``size`` None: the preset's, else 128)."""
    from ..objectives import channel
    from ..param import fourier
    from ..render import render

    images: Dict[int, object] = {}
    if from_dir is not None:
        from ..jobs.folder import RenderFolder
        folder = RenderFolder(from_dir)
        for i, (layer, c) in enumerate(units):
            rel = folder.image_rel(layer, str(c))
            path = folder.path(rel)
            if path.exists() or path.is_symlink():  # through the folder's opener: contained, regular, bounded
                images[i] = folder.load_image(rel, f"{layer}:{c}")
    todo = [i for i in range(len(units)) if i not in images]
    if todo and from_dir is not None:
        names = ", ".join(f"{units[i][0]}:{units[i][1]}" for i in todo)
        print(f"featvis circuit: {from_dir} has no visualization of {names}; rendering them", file=sys.stderr)
    if todo:
        objective = sum(channel(units[i][0], units[i][1], batch=j) for j, i in enumerate(todo))
        if preset is not None:
            from ..presets import resolve
            recipe = resolve(preset, batch=len(todo), steps=steps, size=size)
        else:
            recipe = dict(param=fourier(size or 128, batch=len(todo)), steps=steps)
        result = render(model, objective, **recipe, seed=seed, device=device, progress=progress)
        for j, i in enumerate(todo):
            images[i] = result.images[j]
    return [images[i] for i in range(len(units))]


def circuit_figure(model, unit, src: str, k: int = 8, size: Optional[int] = None, steps: int = 512, seed: int = 0,
                   device=None, progress: bool = True, from_dir=None, inputs: Optional[List["Input"]] = None,
                   out=None, preset: Optional[str] = None, **figure_kwargs):
    """The circuit figure of ``unit`` (``"mixed3b:342"``) from layer ``src``; returns
    :class:`CircuitFigure` ``(image, inputs)``, which Jupyter shows as the figure and a table.

    Top row: the unit's visualization, then its ``k`` strongest inputs' (see
    :func:`featvis.circuits.top_inputs`, or pass ``inputs``). Bottom row: the colour scale, then
    each input's expanded-weight heatmap, all on one symmetric scale, captioned with the sign and
    norm. ``from_dir``: a render folder to take visualizations from (the rest are rendered in one
    batch) with ``preset``'s recipe (:mod:`featvis.presets`; ``size`` None: the preset's size, else
    128). Other keyword arguments go to :func:`featvis.figures.figure` (``dpi``, ``size_in``...);
    ``out`` writes ``.png`` (Pillow), or ``.pdf``/``.svg`` drawn with matplotlib
    (:func:`featvis.figures.circuit.circuit_mpl`: vector text, a real colour bar).
    """
    if size is None:
        from ..presets import get
        size = get(preset).size if preset is not None else 128
    from ..figures.grid import figure
    from .circuits import parse_unit, top_inputs

    layer, n = parse_unit(unit)
    if inputs is None:
        inputs = top_inputs(model, (layer, n), src, k=k, device=device)
    if not inputs:
        raise UsageError(f"{layer}:{n} has no input from {src!r} (every expanded weight is zero)")
    units = [(layer, n)] + [(src, inp.channel) for inp in inputs]
    vis = _visualizations(model, units, size, steps, seed, device, progress,
                          Path(from_dir) if from_dir is not None else None, preset)
    scale = max(inp.weights.abs().max().item() for inp in inputs)
    # Cells a whole number of weights wide, so each heatmap fills its cell with square blocks, and
    # at least 3 px a weight, so that a large window (the hand-coded curves see 50 x 50 lines) reads.
    K = max(max(inp.weights.shape) for inp in inputs)
    cell = int(figure_kwargs.pop("cell", max(math.ceil(max(size, 96) / K), HEATMAP_MIN_PX) * K))
    rows = [vis, [colour_bar(scale, cell)] + [heatmap(inp.weights, scale, cell) for inp in inputs]]
    col_titles = [f"{layer}:{n}"] + [f"{src}:{inp.channel}" for inp in inputs]
    captions = [["unit"] + [inp.sign for inp in inputs],
                ["max |w|"] + [f"norm {_label(inp)}" for inp in inputs]]
    if out is not None and Path(out).suffix.lower() in (".pdf", ".svg"):
        # vector text and a real colour bar through matplotlib (featvis.figures.mpl)
        from ..figures.circuit import circuit_mpl
        from ..figures.mpl import save
        save(circuit_mpl(vis, [inp.weights for inp in inputs], scale, col_titles, captions),
             out, dpi=figure_kwargs.get("dpi"))
        out = None
    image = figure(rows, row_titles=["visualization", "expanded\nweights"], col_titles=col_titles,
                   captions=captions, cell=cell, out=out, **figure_kwargs)
    return CircuitFigure(image, inputs, f"{layer}:{n}", src)


def heatmap_path(layer: str, n: int, src: str, c: int) -> str:
    """Where ``--record`` puts an input's heatmap, relative to the render folder."""
    return f"{layer}/circuits/{n}_from_{src}_{c}.png"


def record_circuit(folder, unit, src: str, inputs: List["Input"], made_by: Optional[dict] = None) -> Path:
    """Write ``folder/<layer>/circuits/<channel>.json`` and its heatmaps (see the module doc)
    through the folder's owner (:class:`featvis.jobs.folder.RenderFolder`: under its lock, every
    path contained, atomic writes); returns the JSON's path. The heatmaps share one colour scale
    (max |w| over ``inputs``). ``made_by`` (:func:`featvis.jobs.folder.records.made_by`): the
    network whose weights these are; a folder of another network refuses the record before any
    file is written."""
    from ..jobs.folder import MAIN, RenderFolder
    from .circuits import parse_unit

    rf = folder if isinstance(folder, RenderFolder) else RenderFolder(folder)
    if rf.writer is None:
        with rf.lock(MAIN):
            return record_circuit(rf, unit, src, inputs, made_by)
    layer, n = parse_unit(unit)
    if made_by is not None:
        rf.check_made_by(made_by, f"the circuit of {layer}:{n}", replacing=(layer, n))
    scale = max((inp.weights.abs().max().item() for inp in inputs), default=0.0)
    entries = []
    for inp in inputs:
        rel = heatmap_path(layer, n, src, inp.channel)
        kh, kw = inp.weights.shape
        px = max(kh, kw) * max(1, math.ceil(RECORD_PX / max(kh, kw)))
        rf.save_image(rel, heatmap(inp.weights, scale, px))
        entries.append({"channel": inp.channel, "norm": inp.norm, "sign": inp.sign, "heatmap": rel})
    record = {"unit": f"{layer}:{n}", "from": src, "inputs": entries}
    return rf.record_circuit(layer, n, record, made_by)


# --- the command line ------------------------------------------------------------------------------

EPILOG = """\
The weights are expanded weights (featvis.circuits): the linear map from --from to the unit through
every branch between, with ReLUs as identities and max-pools as average-pools (--keep-nonlinear:
as they are, at src = 0). Red excites, blue inhibits, white is zero, on one scale for the figure.

examples:
  featvis circuit inceptionv1 mixed3b:342 --from mixed3a --top 8 --out circuit.pdf
  featvis circuit handcoded curves:2 --from edges --out curve.png --record handcoded_renders
  featvis circuit resnet50 layer3.1:7 --from layer3.0 --preset fourier-crops --out circuit.png
"""


def add_arguments(parser) -> None:
    """Arguments of ``featvis circuit`` (an ``argparse`` (sub)parser)."""
    parser.epilog = EPILOG
    parser.add_argument("model", help="a model name (see: featvis models)")
    parser.add_argument("unit", help="the downstream unit, LAYER:CHANNEL (e.g. mixed3b:342)")
    parser.add_argument("--from", dest="src", required=True, metavar="LAYER",
                        help="the upstream layer whose units are the inputs (e.g. mixed3a)")
    parser.add_argument("--top", type=int, default=8, metavar="K", help="how many inputs to show (default: 8)")
    parser.add_argument("--out", metavar="FILE",
                        help="the figure, FILE.png, or FILE.pdf / FILE.svg drawn with matplotlib (text as text, a real colour bar)")
    parser.add_argument("--record", metavar="DIR",
                        help="write DIR/<layer>/circuits/<channel>.json and its heatmaps (for the site; renders nothing)")
    parser.add_argument("--from-dir", metavar="DIR",
                        help="a render folder holding the visualizations as <layer>/<channel>.png; missing ones are rendered")
    weights_argument(parser)
    parser.add_argument("--size", type=int, default=None, help="visualization size in pixels (default: the preset's, else 128)")
    from ..presets import PRESETS
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="the visualizations' whole recipe, as featvis render --preset (fourier-crops or maco read "
                             "best on modern ImageNet nets; default: lucid's plain Fourier image)")
    parser.add_argument("--steps", type=int, default=512, help="optimization steps (default: 512)")
    parser.add_argument("--seed", type=int, default=0, help="render seed (default: 0)")
    parser.add_argument("--keep-nonlinear", action="store_true",
                        help="keep ReLUs and max-pools instead of their linear stand-ins")
    parser.add_argument("--dpi", type=float, default=150, help="resolution stored in the figure (default: 150)")
    device_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args) -> None:
    """Every usage error before any work, each naming the input and the fix."""
    if args.out is None and args.record is None:
        raise UsageError("nothing to write: give --out FILE.png|FILE.pdf for the figure, --record DIR, or both")
    if args.out is not None and Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--out {args.out}: the figure is written as .png or .pdf; end the name with one of them "
                         "(or .svg)")
    if args.top < 1:
        raise UsageError(f"--top {args.top}: show at least one input")
    if args.size is not None and args.size < 8:
        raise UsageError(f"--size {args.size}: give at least 8 pixels")
    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: must be at least 1")
    if args.from_dir is not None and not Path(args.from_dir).is_dir():
        raise UsageError(f"--from-dir {args.from_dir}: no such folder; give a folder written by featvis render")
    if args.record is not None and Path(args.record).exists() and not Path(args.record).is_dir():
        raise UsageError(f"--record {args.record}: exists and is not a folder; give a render folder")
    from .circuits import parse_unit
    parse_unit(args.unit)


def run(args) -> int:
    """Run ``featvis circuit`` from parsed arguments; 0 on success (usage errors raise UsageError)."""
    from ..models import pick_device
    from ..models.open import open_model
    from .circuits import top_inputs

    _check(args)
    device = pick_device(None if args.device == "auto" else args.device)
    model = open_model(args.model, args.weights, device, seed=args.seed)
    linearize = not args.keep_nonlinear
    try:
        inputs = top_inputs(model, args.unit, args.src, k=args.top, device=device, linearize=linearize)
    except NotFound as e:
        raise UsageError(str(e)) from None
    if not inputs:
        raise UsageError(f"{args.unit} has no input from {args.src!r} (every expanded weight is zero); "
                         "try another --from layer")
    if args.record is not None:
        from ..jobs.folder.records import made_by_net
        print(record_circuit(args.record, args.unit, args.src, inputs, made_by_net(args.model, model, args.weights)))
    if args.out is not None:
        image, _ = circuit_figure(model, args.unit, args.src, size=args.size, steps=args.steps, seed=args.seed,
                                  device=device, progress=not args.quiet, from_dir=args.from_dir, inputs=inputs,
                                  out=args.out, dpi=args.dpi, preset=args.preset)
        print(f"wrote {args.out} ({image.width}x{image.height} px)")
    return 0
