"""How the ``fourier-crops`` and ``maco`` presets' settings were chosen: variants side by side.

Each variant renders the class visualizations of ``quality_imagenet.py`` (MobileNetV2, the first
``--classes`` of its fixed list, one batch) and is scored the same way (SqueezeNet's mean
probability of the class over 16 crops/flips, spectrum slope). Variants change one thing at a
time from Lucid's Fourier image through maco's crops: the Fourier decay power (a steeper 1/f^d
scaling of the spectrum's learning rate, so a steeper image spectrum), the smallest crop (the
range of scales the picture must work at), the learning rate, and for MACO the spectrum (1/f or
one measured with ``featvis spectrum --images DIR``) and the crops.

    python3 benchmarks/preset_sweep.py                       # every variant, 20 classes, 128 steps
    python3 benchmarks/preset_sweep.py --variants fc,fc-d1.25-c0.3 --steps 512
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_imagenet as q  # noqa: E402  (puts featvis and ../shared/models on the path)

import featvis  # noqa: E402
from featvis import presets
from featvis.analysis import metrics  # noqa: E402
from featvis.objectives import class_logit  # noqa: E402
from featvis.presets import Preset, warmup_cosine  # noqa: E402


def crops(smallest: float):
    """maco's augmentations with crops of ``smallest``..100% of the side."""
    def make():
        from featvis.transforms import compose, pad, random_rotate
        from featvis.transforms.crops import noise, random_crop, random_flip
        return compose(pad(8, mode="reflect"), random_crop((smallest, 1.0)), random_flip(),
                       random_rotate([-5, -2, 0, 2, 5]), noise(0.02))
    return make


def fourier(decay: float):
    return lambda size, batch: featvis.param.fourier(size, batch=batch, decay_power=decay)


def maco(spectrum=None):
    return lambda size, batch: featvis.param.maco(size, batch=batch, spectrum=spectrum)


def variants(spectrum=None):
    """{name: Preset}: ``fc`` is the first fourier-crops (decay 1, crops 0.5-1, lr 0.05)."""
    v = {"lucid": presets.get("lucid")}
    for decay in (1.0, 1.15, 1.25, 1.5):
        for smallest in (0.5, 0.3, 0.2):
            name = "fc" + (f"-d{decay:g}" if decay != 1 else "") + (f"-c{smallest:g}" if smallest != 0.5 else "")
            v[name] = Preset(name, "", fourier(decay), crops(smallest), 0.05, 224, schedule=warmup_cosine)
    v["fc-d1.25-c0.3-lr0.1"] = Preset("fc-d1.25-c0.3-lr0.1", "", fourier(1.25), crops(0.3), 0.1, 224,
                                      schedule=warmup_cosine)
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
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--spectrum", help="a featvis spectrum file: adds maco variants under it")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    table = variants(args.spectrum)
    names = args.variants.split(",") if args.variants else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    mobilenet, squeezenet, _ = q.load_models()
    classes = q.CLASSES[:args.classes]
    print(f"{len(classes)} classes, {args.steps} steps, {args.size} px, seed {args.seed}\n")
    print("| variant | squeezenet p(class) | read (p >= 0.5) | spectrum slope | s/step |\n|---|---|---|---|---|")
    for name in names:
        p = table[name]
        kw = dict(param=p.param(args.size, len(classes)), transforms=p.transforms(), steps=args.steps,
                  optimizer=p.optimizer(args.steps))
        t0 = time.perf_counter()
        images = featvis.render(mobilenet, class_logit(classes), seed=args.seed, progress=False, **kw).images
        per_step = (time.perf_counter() - t0) / args.steps
        read = q.judge(squeezenet, images, classes, 16)
        slope = np.median(metrics.spectrum_slope(images))
        print(f"| {name} | {read.mean():.3f} | {(read >= 0.5).sum()}/{len(classes)} | {slope:.2f} | {per_step:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
