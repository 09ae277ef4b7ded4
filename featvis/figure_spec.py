"""``featvis figure SPEC.json``: a declarative figure, every cell rendered in one batched run.

A spec names the model, the render settings and the grid; each cell is a unit. For example::

    {
      "model": "inceptionv1", "weights": "default",
      "size": 128, "steps": 512, "seed": 0,
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
leading ``-``; ``null`` leaves the cell blank. ``figure`` holds keyword arguments of
:func:`featvis.io.figure`; ``captions: true`` writes each cell's final objective under it. A
relative ``out`` is relative to the spec file's folder.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from .io import figure
from .objectives import Objective, channel, neuron
from .param import fourier
from .errors import UsageError
from .units import Unit

#: Keys a spec may have (anything else is a typo worth reporting).
KEYS = {"model", "weights", "size", "steps", "seed", "lr", "batch", "rows", "col_titles", "captions", "figure", "out"}


def cell_objective(text: str, index: int) -> Objective:
    """The objective of one cell, narrowed to image ``index`` of the batch."""
    terms = [t.strip() for t in str(text).split("+")]
    total = None
    for term in terms:
        negate = term.startswith("-")
        try:
            unit = Unit.parse(term[1:] if negate else term)
        except UsageError:
            raise ValueError(f"cell {text!r}: cannot read {term!r}; expected 'layer:channel', 'layer:channel@x,y', "
                             "several joined by '+', each optionally with a leading '-'") from None
        if not unit.is_neuron:
            obj = channel(unit.layer, unit.channel, batch=index)
        else:
            obj = neuron(unit.layer, unit.channel, x=unit.x, y=unit.y, batch=index)
        obj = -obj if negate else obj
        total = obj if total is None else total + obj
    return total


def load_spec(path) -> dict:
    """Read and check a spec file; raises ``ValueError`` naming the problem."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no figure spec {str(path)!r}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a figure spec is a JSON object with 'model' and 'rows'")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    for key in ("model", "rows"):
        if key not in spec:
            raise ValueError(f"{path}: missing {key!r}")
    rows = spec["rows"]
    well_formed = isinstance(rows, list) and rows and all(isinstance(r, dict) and isinstance(r.get("cells"), list)
                                                          for r in rows)
    if not well_formed:
        raise ValueError(f"{path}: 'rows' must be a non-empty list of {{\"title\": ..., \"cells\": [...]}}")
    return spec


def render_spec(spec: dict, model=None, device=None, progress: bool = True, base: Optional[Path] = None,
                out: Optional[Path] = None, steps: Optional[int] = None):
    """Render every cell of ``spec`` (batched, ``spec["batch"]`` images at a time, all by default)
    and draw the figure; writes it when the spec or ``out`` names a file. Returns the image."""
    from .models import load_model
    from .render import render

    if model is None:
        weights = spec.get("weights", "default")
        model = load_model(spec["model"], weights=None if str(weights).lower() == "none" else weights, device=device)
    cells: List[Tuple[int, int, str]] = [(r, c, text) for r, row in enumerate(spec["rows"])
                                         for c, text in enumerate(row["cells"]) if text is not None]
    if not cells:
        raise ValueError("the spec has no cells to render (every cell is null)")
    size, batch = int(spec.get("size", 128)), int(spec.get("batch", len(cells)))
    images, values = {}, {}
    for start in range(0, len(cells), batch):
        group = cells[start:start + batch]
        objective = sum(cell_objective(text, i) for i, (_, _, text) in enumerate(group))
        lr = {"lr": float(spec["lr"])} if spec.get("lr") is not None else {}
        result = render(model, objective, param=fourier(size, batch=len(group)),
                        steps=int(steps if steps is not None else spec.get("steps", 512)),
                        seed=spec.get("seed", 0), device=device, progress=progress, **lr)
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
    return figure(rows, row_titles=[row.get("title") for row in spec["rows"]], col_titles=spec.get("col_titles"),
                  captions=captions, out=target, **spec.get("figure", {}))


def add_arguments(parser) -> None:
    """Arguments of ``featvis figure`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("spec", help="figure spec (JSON; see featvis.figure_spec)")
    parser.add_argument("--out", default=None, help="write here instead of the spec's 'out' (.png or .pdf)")
    parser.add_argument("--steps", type=int, default=None, help="override the spec's steps")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``featvis figure`` from parsed arguments; 0 on success, 2 on a user error."""
    try:
        spec = load_spec(args.spec)
        out = Path(args.out) if args.out else None
        if out is None and spec.get("out") is None:
            raise ValueError(f"{args.spec} has no 'out' and no --out was given; say where the figure goes")
        image = render_spec(spec, device=args.device, progress=not args.quiet, base=Path(args.spec).parent,
                            out=out, steps=args.steps)
    except (KeyError, ValueError, IndexError, FileNotFoundError) as e:
        print(f"featvis figure: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    where = out if out is not None else Path(args.spec).parent / spec["out"]
    print(f"wrote {where} ({image.width}x{image.height} px)")
    return 0
