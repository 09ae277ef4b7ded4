"""``featvis selfcheck``: render every unit of the hand-coded model and check that featvis finds
what each unit was built to detect.

For each ``edges`` channel (oriented lines, some red-green) and each ``curves`` channel (arcs
bending one of 8 ways) of :mod:`featvis.models.handcoded`, one image is rendered with the default
pipeline (:func:`featvis.render` with ``param.fourier`` and ``transforms.standard()``; one batch per
layer via ``channel(layer, [all channels])``) and scored with :mod:`featvis.metrics`:

- orientation error: the image's dominant orientation (colour structure tensor) against the
  unit's preferred one, modulo 180 degrees. Must be within ``MAX_ORIENTATION_ERROR`` for every unit.
- curvature (curves only): the weighted mean curvature vector of the image's orientation field
  (:func:`featvis.metrics.bend`) must point within ``MAX_BEND_ERROR`` of the unit's preferred bend
  (the direction towards its centre of curvature), and the lines must bend consistently:
  :func:`featvis.metrics.bend_strength` (length of the mean curvature vector over the mean length)
  at least ``MIN_BEND_STRENGTH``. A straight grating has no curvature and a sine wave bends both
  ways equally (strength near 0); an image of arcs bending the wrong way points ~180 degrees off.
- reported, not gated: robustness (:func:`featvis.metrics.robustness`), the power spectrum slope
  (:func:`featvis.metrics.spectrum_slope`) and the activation ratio against the designed stimuli
  (gratings, lines and arcs: how far beyond them the optimization went).

``python -m featvis.analysis.selfcheck [--steps N]`` prints the table and exits 0 when every unit passes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from ..models import load_model, pick_device
from ..models.handcoded import arc, describe, grating, line
from ..objectives import channel
from ..param import fourier
from ..render import render
from . import metrics

#: Pass thresholds (degrees, and a fraction). 15 degrees is the issue's bar; the hand-coded units
#: are 22.5 (lines) and 45 (curves) degrees apart.
MAX_ORIENTATION_ERROR, MAX_BEND_ERROR, MIN_BEND_STRENGTH = 15.0, 45.0, 0.3
#: Defaults: 64 px images (three arcs of the curve units across), 256 steps.
SIZE, STEPS, SEED = 64, 256, 0
LAYERS = ("edges", "curves")


def reference_stimuli(size: int = SIZE) -> torch.Tensor:
    """(N, 3, size, size) designed stimuli: gratings (luminance and red-green) at 16 orientations
    and 2 phases, lines at 16 orientations, arcs bending 16 ways at radii 8, 10 and 12 px."""
    angles = [i * 180 / 16 for i in range(16)]
    ims = [grating(a, size, phase=p) for a in angles for p in (0.0, math.pi)]
    ims += [grating(a, size, phase=p, colour=((1, 0, 0), (0, 1, 0))) for a in angles for p in (0.0, math.pi)]
    ims += [line(a, size) for a in angles]
    ims += [arc(b * 22.5, r, size) for b in range(16) for r in (8.0, 10.0, 12.0)]
    return torch.stack(ims)


def run(steps: int = STEPS, device=None, progress: bool = True, size: int = SIZE, seed: int = SEED,
        robustness_draws: int = 32, out=None) -> Tuple[List[dict], bool]:
    """Render and score every ``edges`` and ``curves`` unit; returns (rows, all passed).

    Each row: ``layer``, ``channel``, ``preferred`` (the model's dict), ``orientation`` (found),
    ``orientation_error``, ``bend`` / ``bend_error`` / ``bend_strength`` (curves; None for
    edges), ``robustness``, ``spectrum_slope``, ``activation_ratio``, ``value`` and ``ok``.
    ``out``: a folder to save the renderings in, to look at: ``<layer>/<channel>.png`` and a
    titled ``<layer>_sheet.png`` (enlarged to 128 px cells) per layer.
    """
    device = pick_device(device)
    model = load_model("handcoded", device=device)
    refs = reference_stimuli(size)
    rows = []
    for layer in LAYERS:
        prefs = model.preferred[layer]
        chans = list(range(len(prefs)))
        obj = channel(layer, chans)
        result = render(model, obj, param=fourier(size, batch=len(chans)), steps=steps, seed=seed,
                        device=device, progress=progress)
        if out is not None:
            _save(Path(out), layer, result, [describe(p) for p in prefs], size, steps)
        found = metrics.orientation(result)
        ori_err = metrics.orientation_error(result, prefs)
        robust = metrics.robustness(model, result, obj, n=robustness_draws, seed=seed)
        slope = metrics.spectrum_slope(result)
        ratio = metrics.activation_ratio(model, result, layer, chans, refs)
        curved = layer == "curves"
        if curved:
            bend, bend_err = metrics.bend(result), metrics.bend_error(result, prefs)
            strength = metrics.bend_strength(result)
        for c in chans:
            row = {
                "layer": layer, "channel": c, "preferred": prefs[c], "orientation": float(found[c]),
                "orientation_error": float(ori_err[c]), "bend": float(bend[c]) if curved else None,
                "bend_error": float(bend_err[c]) if curved else None,
                "bend_strength": float(strength[c]) if curved else None,
                "robustness": float(robust[c]), "spectrum_slope": float(slope[c]),
                "activation_ratio": float(ratio[c]), "value": float(result.values[c]),
            }
            row["ok"] = bool(row["orientation_error"] <= MAX_ORIENTATION_ERROR and (not curved or (
                row["bend_error"] <= MAX_BEND_ERROR and row["bend_strength"] >= MIN_BEND_STRENGTH)))
            rows.append(row)
    return rows, all(r["ok"] for r in rows)


def _save(out: Path, layer: str, result, labels: List[str], size: int, steps: int) -> None:
    from ..figures.grid import sheet
    from ..io import save_image
    for c, image in enumerate(result.images):
        save_image(image, out / layer / f"{c}.png")
    cell = size * max(1, -(-128 // size))
    sheet(result.images, labels=[f"{c}: {t}" for c, t in enumerate(labels)], cell=cell,
          title=f"handcoded {layer}: channel, fourier {size} px, {steps} steps", path=out / f"{layer}_sheet.png")


def format_table(rows: List[dict]) -> str:
    """The rows of :func:`run` as a fixed-width text table."""
    head = (f"{'unit':<10} {'preferred':<20} {'found':<18} {'error':>11} {'curved':>6} {'robust':>6} "
            f"{'slope':>6} {'ratio':>6}  ok")
    lines = [head, "-" * len(head)]
    for r in rows:
        found, err, curved = f"{r['orientation']:.1f}", f"{r['orientation_error']:.1f}", ""
        if r["bend"] is not None:
            found += f", bend {r['bend']:.0f}"
            err += f" / {r['bend_error']:.0f}"
            curved = f"{r['bend_strength']:.2f}"
        lines.append(
            f"{r['layer'] + ':' + str(r['channel']):<10} {describe(r['preferred']):<20} {found:<18} "
            f"{err:>11} {curved:>6} {r['robustness']:>6.2f} {r['spectrum_slope']:>6.2f} "
            f"{r['activation_ratio']:>6.2f}  {'yes' if r['ok'] else 'NO'}")
    legend = ("found: orientation (deg), and for curves the bend (deg); error: orientation / bend error; "
              "curved: bend strength;\nrobust: objective under jitter/scale/rotation over its value; "
              "slope: power spectrum slope; ratio: activation over the best designed stimulus")
    return "\n".join(lines + ["", legend])


def add_arguments(parser) -> None:
    """Arguments of ``featvis selfcheck`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimization steps per layer (default {STEPS})")
    parser.add_argument("--size", type=int, default=SIZE, help=f"image size in px (default {SIZE})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--out", default="selfcheck", metavar="DIR",
                        help="save the renderings and a sheet per layer here (default: selfcheck)")


def run_args(args) -> int:
    """Render, print the table; 0 if every unit passed, 1 otherwise, 2 for bad options."""
    if args.steps < 1 or args.size < 32:
        print(f"featvis selfcheck: error: --steps must be >= 1 and --size >= 32 (the curve units span 26 px); "
              f"got {args.steps}, {args.size}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows, ok = run(steps=args.steps, device=args.device, progress=not args.quiet, size=args.size, seed=args.seed,
                   out=args.out)
    print(format_table(rows))
    print(f"\nimages: {Path(args.out) / '<layer>'}/<channel>.png; sheets: "
          + ", ".join(str(Path(args.out) / f"{layer}_sheet.png") for layer in LAYERS))
    bad = [f"{r['layer']}:{r['channel']}" for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} units passed in {time.perf_counter() - start:.1f} s "
          f"(orientation error <= {MAX_ORIENTATION_ERROR:g} deg; curves: bend error <= {MAX_BEND_ERROR:g} deg "
          f"and bend strength >= {MIN_BEND_STRENGTH:g})" + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 0 if ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Command line (``featvis selfcheck`` or ``python -m featvis.analysis.selfcheck``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="featvis selfcheck",
        description="Render every unit of the hand-coded model and check that featvis recovers the "
                    "orientation (within 15 degrees) and curvature each unit was built for.")
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
