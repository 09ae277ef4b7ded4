"""How the presets' settings were chosen: variants side by side, on every rendering network.

Each variant renders the class visualizations of ``quality_imagenet.py`` (the first ``--classes``
of its fixed list, one batch) on each of ``--models`` (default ResNet-50 and MobileNetV2 of
../shared/models) and is scored the same way: each model's pictures read by the networks other
than itself (SqueezeNet always), the judges' mean probability of the class over ``--views``
crops/flips, the spectrum slope and the saturation. A variant is ranked by its WORST model: a
recipe that only one network reads is tuned to that network.

Variants change one thing at a time from ``fourier-crops`` (``fc``: Fourier 1/f^1.25, crops
30-100%, Adam 0.05 warm-up + cosine): the Fourier decay power, the smallest crop, the learning
rate, colour decorrelation, the colour (chroma) gain against the pale look, the init scale, and
a wider ensemble of transforms (zoom and larger rotations on top of the crops). The first sweep
(MobileNetV2 only, read by SqueezeNet) kept its variants by their old names (``fc-d1.25-c0.3`` ...).

    python3 benchmarks/preset_sweep.py --classes 8 --steps 128 --size 128 --views 8   # a screen
    python3 benchmarks/preset_sweep.py --variants fc,fc-lr0.1 --classes 20 --steps 512 --size 224

``--csv FILE`` appends one line per (variant, model) as soon as it is measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_imagenet as q  # noqa: E402  (puts featvis and ../shared/models on the path)

import featvis  # noqa: E402
from featvis import presets  # noqa: E402
from featvis.presets import Preset, warmup_cosine  # noqa: E402


def crops(smallest: float, ensemble: bool = False):
    """fourier-crops' augmentations with crops of ``smallest``..100% of the side; ``ensemble``
    adds a zoom of 0.9-1.1 and rotations of up to 10 degrees (Lucid's standard ranges) on top."""
    def make():
        from featvis.transforms import STANDARD_ANGLES, STANDARD_SCALES, compose, pad, random_rotate, random_scale
        from featvis.transforms.crops import noise, random_crop, random_flip
        if ensemble:
            return compose(pad(8, mode="reflect"), random_crop((smallest, 1.0)), random_flip(),
                           random_scale(STANDARD_SCALES), random_rotate(STANDARD_ANGLES), noise(0.02))
        return compose(pad(8, mode="reflect"), random_crop((smallest, 1.0)), random_flip(),
                       random_rotate([-5, -2, 0, 2, 5]), noise(0.02))
    return make


def fourier(decay: float, **options):
    return lambda size, batch: featvis.param.fourier(size, batch=batch, decay_power=decay, **options)


def maco(spectrum=None):
    return lambda size, batch: featvis.param.maco(size, batch=batch, spectrum=spectrum)


def fc(name, decay=1.25, smallest=0.3, lr=0.05, ensemble=False, weight_decay=0.0, schedule=warmup_cosine, **options):
    """A fourier-crops variant."""
    return Preset(name, "", fourier(decay, **options), crops(smallest, ensemble), lr, 224, schedule=schedule,
                  weight_decay=weight_decay)


def variants(spectrum=None):
    """{name: Preset}: ``fc`` is today's fourier-crops (decay 1.25, crops 0.3-1, lr 0.05)."""
    v = {"lucid": presets.get("lucid")}
    v["fc"] = fc("fc")
    for lr in (0.025, 0.1, 0.2):
        v[f"fc-lr{lr:g}"] = fc(f"fc-lr{lr:g}", lr=lr)
    for decay in (1.0, 1.5):
        v[f"fc-d{decay:g}"] = fc(f"fc-d{decay:g}", decay=decay)
    for smallest in (0.2, 0.5):
        v[f"fc-c{smallest:g}"] = fc(f"fc-c{smallest:g}", smallest=smallest)
    v["fc-ens"] = fc("fc-ens", ensemble=True)
    v["fc-nodecor"] = fc("fc-nodecor", decorrelate=False)
    # second round: the first round's winner (lr 0.1) with each runner-up
    v["fc-lr0.1-ens"] = fc("fc-lr0.1-ens", lr=0.1, ensemble=True)
    v["fc-lr0.1-d1.5"] = fc("fc-lr0.1-d1.5", lr=0.1, decay=1.5)
    v["fc-lr0.1-c0.5"] = fc("fc-lr0.1-c0.5", lr=0.1, smallest=0.5)
    for sd in (0.05,):
        v[f"fc-sd{sd:g}"] = fc(f"fc-sd{sd:g}", sd=sd)
    # third round, against the saturation at 512 steps (6% of values pinned on MobileNetV2 at 224 px,
    # the photos 2.6%): from today's fourier-crops (``fcs``: decay 1.5), Adam's steady step pushes
    # coefficients no gradient holds outwards; decoupled weight decay pulls them back, a lower lr or
    # a schedule that ends at 0 takes smaller steps late
    v["fcs"] = fc("fcs", decay=1.5)
    for wd in (0.03, 0.1, 0.3, 1.0):
        v[f"fcs-wd{wd:g}"] = fc(f"fcs-wd{wd:g}", decay=1.5, weight_decay=wd)
    v["fcs-lr0.03"] = fc("fcs-lr0.03", decay=1.5, lr=0.03)
    v["fcs-floor0"] = fc("fcs-floor0", decay=1.5, schedule=lambda t: warmup_cosine(t, floor=0.0))
    v["fcs-d1.4"] = fc("fcs-d1.4", decay=1.4)
    # the first sweep's variants (MobileNetV2 read by SqueezeNet), by their names there
    for decay in (1.0, 1.15, 1.25, 1.5):
        for smallest in (0.5, 0.3, 0.2):
            name = "fc1" + (f"-d{decay:g}" if decay != 1 else "") + (f"-c{smallest:g}" if smallest != 0.5 else "")
            v.setdefault(name, fc(name, decay, smallest))
    for smallest in (0.5, 0.3):
        name = "maco" + (f"-c{smallest:g}" if smallest != 0.5 else "")
        v[name] = Preset(name, "", maco(), crops(smallest), 1.0, 224, schedule=warmup_cosine)
        if spectrum:
            v[name + "-measured"] = Preset(name, "", maco(spectrum), crops(smallest), 1.0, 224, schedule=warmup_cosine)
    for name in presets.PRESETS:  # the shipped ones, by their own names
        v.setdefault(name, presets.get(name))
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", help="comma-separated (default: all; see variants())")
    ap.add_argument("--models", default=",".join(q.MODELS))
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--spectrum", help="a featvis spectrum file: adds maco variants under it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="append one line per (variant, model) here")
    ap.add_argument("--sheet", help="a labelled sheet of every variant's pictures (PNG)")
    args = ap.parse_args(argv)
    args.robust_n, args.natural = 0, None  # score()'s optional columns
    table = variants(args.spectrum)
    names = args.variants.split(",") if args.variants else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    models = args.models.split(",")
    nets = q.Nets()
    classes = q.CLASSES[:args.classes]
    print(f"{len(classes)} classes, {args.steps} steps, {args.size} px, seed {args.seed}, {args.views} views per judge\n")
    print("| variant | model | read (judges' mean) | >=0.5 | per judge | slope | saturation | s/step |\n|---|---|---|---|---|---|---|---|")
    rows, grid, titles = [], [], []
    for name in names:
        for model in models:
            torch.manual_seed(args.seed)
            images, per_step = q.render_classes(table[name], nets.wrapped(model), classes, args.steps, args.size, args.seed)
            r = q.score(name, model, images, per_step, nets, classes, args)
            rows.append(r)
            grid.append(list(images))
            titles.append(f"{name} / {model}")
            if args.csv:
                q.append_csv(args.csv, r, args)
            judges = "; ".join(f"{j} {v.mean():.3f}" for j, v in r["judges"].items())
            print(f"| {name} | {model} | {r['read'].mean():.3f} | {(r['read'] >= 0.5).sum()}/{len(classes)} | {judges} | "
                  f"{np.median(r['slope']):.2f} | {r['saturation'].mean():.4f} | {per_step:.2f} |", flush=True)
    print()
    print(q.summary(rows, models))
    if args.sheet:
        labels = nets.labels()
        featvis.figures.figure(grid, row_titles=titles, col_titles=[labels[c].split(",")[0] for c in classes],
                               captions=[[f"p={p:.2f}" for p in r["read"]] for r in rows],
                               cell=min(96, args.size), out=args.sheet)


if __name__ == "__main__":
    main()
