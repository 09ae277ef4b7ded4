"""``featvis figure SPEC.json``: a declarative figure, every cell rendered in one batched run.

A spec names the model, the render settings and the grid; each cell is a unit. For example::

    {
      "model": "inceptionv1", "weights": "default",
      "size": 128, "steps": 512, "seed": 0, "preset": "lucid",
      "rows": [
        {"title": "mixed4a", "cells": ["mixed4a:476", "mixed4a:476@7,7", "mixed4a:476+mixed4a:465"]},
        {"title": "mixed4b", "cells": ["mixed4b:465", null, "-mixed4b:465"]}
      ],
      "col_titles": ["channel", "neuron", "pair"],
      "captions": true,
      "figure": {"dpi": 300, "size_in": [6.75, 4.5]},
      "out": "figure1.pdf"
    }

A cell is ``"layer:channel"`` (the channel's mean), ``"layer:channel@x,y"`` (the neuron at
column x, row y), several joined by ``+`` (maximized together), each optionally negated with a
leading ``-``; ``null`` leaves the cell blank. ``preset`` (optional) is a whole recipe of
:mod:`featvis.presets` (``fourier-crops`` reads best on modern ImageNet nets; its ``size`` is the
default size then); without it a plain Fourier image. ``figure`` holds keyword arguments of
:func:`featvis.figures.figure`; ``captions: true`` writes each cell's final objective under it. A
relative ``out`` is relative to the spec file's folder. A ``.png`` is drawn with Pillow; a ``.pdf``
or ``.svg`` with matplotlib (:mod:`featvis.figures.mpl`: text stays text, ``figure.size_in`` and
``figure.dpi`` apply, the other ``figure`` options are Pillow's).
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import UsageError
from ..objectives import Objective, channel, neuron
from ..param import fourier
from ..units import Unit
from .grid import figure, figure_layout

#: Keys a spec may have (anything else is a typo worth reporting).
KEYS = {"model", "weights", "size", "steps", "seed", "lr", "batch", "preset", "rows", "col_titles", "captions", "figure",
        "out"}


def cell_objective(text: str, index: int) -> Objective:
    """The objective of one cell, narrowed to image ``index`` of the batch."""
    terms = [t.strip() for t in str(text).split("+")]
    total = None
    for term in terms:
        negate = term.startswith("-")
        try:
            unit = Unit.parse(term[1:] if negate else term)
        except UsageError:
            raise UsageError(f"cell {text!r}: cannot read {term!r}; expected 'layer:channel', 'layer:channel@x,y', "
                             "several joined by '+', each optionally with a leading '-'") from None
        if not unit.is_neuron:
            obj = channel(unit.layer, unit.channel, batch=index)
        else:
            obj = neuron(unit.layer, unit.channel, x=unit.x, y=unit.y, batch=index)
        obj = -obj if negate else obj
        total = obj if total is None else total + obj
    return total


def load_spec(path) -> dict:
    """Read and check a spec file (every key's type and range, every cell, the figure options),
    before anything is rendered; raises :class:`UsageError` naming the problem."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no figure spec {str(path)!r}; give the path of a JSON spec (see featvis.figures.spec)") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give the path of a JSON figure spec") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: a figure spec is a JSON object with 'model' and 'rows'")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    for key in ("model", "rows"):
        if key not in spec:
            raise UsageError(f"{path}: missing {key!r}")
    rows = spec["rows"]
    well_formed = isinstance(rows, list) and rows and all(isinstance(r, dict) and isinstance(r.get("cells"), list)
                                                          for r in rows)
    if not well_formed:
        raise UsageError(f"{path}: 'rows' must be a non-empty list of {{\"title\": ..., \"cells\": [...]}}")
    check_spec(spec, path)
    return spec


def _whole(spec, key, low, high, where):
    value = spec.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UsageError(f"{where}: {key!r} is {value!r}; expected a whole number from {low} to {high}")


def check_spec(spec: dict, where="the spec", out=None) -> None:
    """Everything about a spec that can be checked without rendering: numbers, cells, titles,
    figure options, the output suffix. Raises :class:`UsageError`."""
    if not isinstance(spec["model"], str):
        raise UsageError(f"{where}: 'model' must be a model name (see: featvis models)")
    if spec.get("preset") is not None:
        from ..presets import PRESETS
        if spec["preset"] not in PRESETS:
            raise UsageError(f"{where}: 'preset' is {spec['preset']!r}; expected one of {', '.join(PRESETS)} "
                             "(see featvis.presets), or leave it out")
    _whole(spec, "size", 8, 4096, where)
    _whole(spec, "steps", 1, 10**7, where)
    _whole(spec, "seed", 0, 2**63 - 1, where)
    _whole(spec, "batch", 1, 4096, where)
    lr = spec.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise UsageError(f"{where}: 'lr' is {lr!r}; expected a positive finite number, e.g. 0.05")
    cols = 0
    for r, row in enumerate(spec["rows"]):
        cols = max(cols, len(row["cells"]))
        for c, text in enumerate(row["cells"]):
            if text is not None:
                if not isinstance(text, str):
                    raise UsageError(f"{where}: row {r} cell {c} is {text!r}; expected 'layer:channel' or null")
                cell_objective(text, 0)
    options = spec.get("figure", {})
    if not isinstance(options, dict):
        raise UsageError(f"{where}: 'figure' must be an object of featvis.figures.figure options")
    allowed = set(inspect.signature(figure).parameters) - {"rows", "row_titles", "col_titles", "captions", "out"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown figure option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    dpi = options.get("dpi", 150)
    if not isinstance(dpi, (int, float)) or isinstance(dpi, bool) or not math.isfinite(dpi) or not 0 < dpi <= 10000:
        raise UsageError(f"{where}: figure dpi is {dpi!r}; expected a number from 1 to 10000")
    if options.get("background", "white") not in ("white", "transparent"):
        raise UsageError(f"{where}: figure background {options['background']!r}; expected 'white' or 'transparent'")
    col_titles = spec.get("col_titles")
    if col_titles is not None and not (isinstance(col_titles, list) and all(t is None or isinstance(t, str) for t in col_titles)):
        raise UsageError(f"{where}: 'col_titles' must be a list of strings (null for none)")
    titles = [row.get("title") for row in spec["rows"]]
    if not all(t is None or isinstance(t, str) for t in titles):
        raise UsageError(f"{where}: each row's 'title' must be a string (or null)")
    try:
        figure_layout(len(spec["rows"]), cols, (16, 16), 8, titles, col_titles, captions=False)
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    target = out if out is not None else spec.get("out")
    if target is not None and Path(str(target)).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"{where}: cannot write a figure to {str(target)!r}; end the name with .png or .pdf "
                         "(or .svg)")


def render_spec(spec: dict, model=None, device=None, progress: bool = True, base: Optional[Path] = None,
                out: Optional[Path] = None, steps: Optional[int] = None):
    """Render every cell of ``spec`` (batched, ``spec["batch"]`` images at a time, all by default)
    and draw the figure; writes it when the spec or ``out`` names a file. Returns the image."""
    from ..models import load_model
    from ..render import render

    if model is None:
        weights = spec.get("weights", "default")
        model = load_model(spec["model"], weights=None if str(weights).lower() == "none" else weights, device=device)
    cells: List[Tuple[int, int, str]] = [(r, c, text) for r, row in enumerate(spec["rows"])
                                         for c, text in enumerate(row["cells"]) if text is not None]
    if not cells:
        raise UsageError("the spec has no cells to render (every cell is null)")
    preset = spec.get("preset")
    if spec.get("size") is not None:
        size = int(spec["size"])
    else:
        from ..presets import get
        size = get(preset).size if preset else 128
    batch = int(spec.get("batch", len(cells)))
    images, values = {}, {}
    for start in range(0, len(cells), batch):
        group = cells[start:start + batch]
        objective = sum(cell_objective(text, i) for i, (_, _, text) in enumerate(group))
        lr = float(spec["lr"]) if spec.get("lr") is not None else None
        n_steps = int(steps if steps is not None else spec.get("steps", 512))
        if preset:
            from ..presets import resolve
            recipe = resolve(preset, batch=len(group), steps=n_steps, lr=lr, size=size)
        else:
            recipe = dict(param=fourier(size, batch=len(group)), steps=n_steps, **({"lr": lr} if lr else {}))
        result = render(model, objective, **recipe, seed=spec.get("seed", 0), device=device, progress=progress)
        for i, (r, c, _) in enumerate(group):
            images[r, c], values[r, c] = result.images[i], float(result.values[i])
    rows = [[images.get((r, c)) for c in range(len(row["cells"]))] for r, row in enumerate(spec["rows"])]
    captions = None
    if spec.get("captions"):
        captions = [[f"{values[r, c]:.3g}" if (r, c) in values else "" for c in range(len(row["cells"]))]
                    for r, row in enumerate(spec["rows"])]
    target = out if out is not None else spec.get("out")
    if target is not None and base is not None and not Path(target).is_absolute():
        target = base / target
    row_titles = [row.get("title") for row in spec["rows"]]
    options = dict(spec.get("figure", {}))
    if target is not None and Path(str(target)).suffix.lower() in (".pdf", ".svg"):
        # PDF and SVG through matplotlib: titles and captions stay text; the user's rcParams apply
        from .mpl import grid_figure, save
        fig = grid_figure(rows, row_titles=row_titles, col_titles=spec.get("col_titles"), captions=captions)
        size_in = options.get("size_in")
        if size_in is not None:
            w, h = fig.get_size_inches()
            fig.set_size_inches(tuple(size_in) if isinstance(size_in, (list, tuple)) else (size_in, size_in * h / w))
        save(fig, target, dpi=options.get("dpi"))
        target = None
    return figure(rows, row_titles=row_titles, col_titles=spec.get("col_titles"), captions=captions, out=target,
                  **options)


def add_arguments(parser) -> None:
    """Arguments of ``featvis figure`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("spec", help="figure spec (JSON; see featvis.figures.spec)")
    parser.add_argument("--out", default=None, help="write here instead of the spec's 'out' (.png; .pdf or .svg with vector text)")
    parser.add_argument("--steps", type=int, default=None, help="override the spec's steps")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``featvis figure`` from parsed arguments; 0 on success. Every check (the spec, the
    output suffix, the model) comes before rendering; a user error raises
    :class:`~featvis.errors.UsageError` (``featvis.cli.main`` prints it, status 2)."""
    from ..models import pick_device
    from ..models.open import open_model

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else None
    if out is None and spec.get("out") is None:
        raise UsageError(f"{args.spec} has no 'out' and no --out was given; say where the figure goes")
    check_spec(spec, args.spec, out)
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps {args.steps}: must be at least 1")
    device = pick_device(args.device or "auto")
    model = open_model(spec["model"], str(spec.get("weights", "default")), device, int(spec.get("seed", 0)))
    image = render_spec(spec, model=model, device=device, progress=not args.quiet, base=Path(args.spec).parent,
                        out=out, steps=args.steps)
    where = out if out is not None else Path(args.spec).parent / spec["out"]
    print(f"wrote {where} ({image.width}x{image.height} px)")
    return 0
