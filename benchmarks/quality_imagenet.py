"""Can people (and other networks) read featvis's pictures of real ImageNet networks?

Class visualizations of a fixed list of ImageNet classes, one image per class in one batch, for
each preset side by side, on every rendering network of ../shared/models (``--models``, default
``resnet50,mobilenet_v2``), each judged by the networks other than itself (SqueezeNet always: a
ResNet-50 picture is read by MobileNetV2 and SqueezeNet, a MobileNetV2 picture by ResNet-50 and
SqueezeNet). A recipe tuned on one network and read only by another is overfitted to the pair;
users bring networks we have never seen, so a preset is judged by its WORST model.

Per (preset, model):

- ``read``: the judges' mean of each judge's mean probability of the target class over ``--views``
  random crops (60-100% of the side, resized to 224 px) and flips (1.0: always read as its class),
  and one column per judge. A picture only the network it was made for reads is an adversarial
  accident, not a readable picture.
- ``own``: the rendering network's own probability of the target class (no transform).
- ``slope``: :func:`featvis.metrics.spectrum_slope` (median; natural images about -2, noise about 0).
- ``saturation``: :func:`featvis.metrics.saturation`, the share of pixel values pinned at 0 or 1.
- ``robust``: :func:`featvis.metrics.robustness` of the class logit (jitter/scale/rotate; ``--robust-n 0`` skips).
- ``faithful``: :func:`featvis.metrics.faithfulness` against the classes' natural images, when a
  folder of them is given (``--natural DIR`` with one sub-folder per class index, e.g. ``DIR/11/*.jpg``).
- ``s/step``: seconds per optimization step (the whole batch), wall time.

Reference rows: ``--images DIR`` (one photo per class, file names sorted by synset = class index,
like the public imagenet-sample-images set) or ``--natural DIR`` scores the classes' photos the same
way (what a readable picture can hope for; the saturation target is twice theirs); with
``--lucent-python PY`` (a Python with ``torch-lucent``) Lucent's defaults on MobileNetV2, one class at
a time (``benchmarks/lucent_classes.py``; ``--lucent-images FILE`` scores a file it wrote earlier).

``--channels`` adds channel visualizations of a few layers of each model per preset to the sheet
(no class to read). The labelled sheet (one row per preset and model, the judges' mean under each
picture) is written to ``--sheet``; ``--csv`` appends one line per (preset, model).

Run from the repository root (2 quiet CPU cores, 224 px, 20 classes: about 0.8 s per step on
MobileNetV2 and 3x that on ResNet-50):

    python3 benchmarks/quality_imagenet.py --images /work/data/imagenet-sample          # 20 classes, 512 steps, 224 px
    python3 benchmarks/quality_imagenet.py --classes 4 --steps 64 --size 128            # a quick look
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "models"))
sys.path.insert(0, "/work/shared/models")

import featvis  # noqa: E402
import featvis.figures  # noqa: E402
from featvis import presets  # noqa: E402
from featvis.analysis import metrics  # noqa: E402
from featvis.objectives import channel, class_logit  # noqa: E402
from featvis.rng import RandomSource, image_seeds  # noqa: E402
from featvis.transforms import compose  # noqa: E402
from featvis.transforms.crops import random_crop, random_flip  # noqa: E402

#: Fixed before any rendering: animals, food, objects and scenes with a recognisable shape or
#: colour (the first eight are the issue's), not picked by how well any preset draws them.
CLASSES = [11, 130, 323, 949, 980, 951, 107, 963,   # goldfinch flamingo monarch strawberry volcano lemon jellyfish pizza
           1, 22, 31, 84, 145, 207, 301, 327, 340, 437, 779, 985]  # goldfish bald-eagle tree-frog peacock king-penguin
#                                          golden-retriever ladybug starfish zebra lighthouse school-bus daisy
#: The networks of ../shared/models: the first two render (``--models``), all three judge.
MODELS = ("resnet50", "mobilenet_v2")
NETS = MODELS + ("squeezenet",)
#: Layers (module paths under the wrapper) and channels per model for --channels.
CHANNEL_UNITS = {
    "mobilenet_v2": [("net.features.6", [0, 1, 2]), ("net.features.12", [0, 1, 2]), ("net.features.16", [0, 1, 2])],
    "resnet50": [("net.layer2.3", [0, 1, 2]), ("net.layer3.5", [0, 1, 2]), ("net.layer4.2", [0, 1, 2])],
}


def judges_of(model: str):
    """The networks that read ``model``'s pictures: every net but itself (SqueezeNet always)."""
    return [n for n in NETS if n != model]


class Nets:
    """The nets of ../shared/models, built on first use: ``raw(name)`` [0, 1] RGB -> logits (the
    judges), ``wrapped(name)`` the featvis model to render on."""

    def __init__(self):
        import imagenet_models as im
        self.im, self._raw, self._wrapped = im, {}, {}

    def raw(self, name):
        if name not in self._raw:
            self._raw[name] = getattr(self.im, name)().eval()
        return self._raw[name]

    def wrapped(self, name):
        if name not in self._wrapped:
            self._wrapped[name] = featvis.wrap(self.raw(name), normalize=None, name=name)
        return self._wrapped[name]

    def labels(self):
        return self.im.labels()


def judge(net, images: torch.Tensor, classes, views: int, seed: int = 0) -> np.ndarray:
    """Mean softmax probability of each image's class over ``views`` random crops and flips."""
    t = compose(random_crop((0.6, 1.0), size=(224, 224)), random_flip())
    rng = RandomSource(image_seeds(seed, len(images)))
    idx = torch.arange(len(images))
    probs = []
    with torch.no_grad():
        for _ in range(views):
            p = net(t(images, rng)).softmax(1)
            probs.append(p[idx, torch.as_tensor(classes)])
    return torch.stack(probs).mean(0).numpy()


def own_probability(model, images, classes) -> np.ndarray:
    with torch.no_grad():
        p = model(images).softmax(1)
    return p[torch.arange(len(images)), torch.as_tensor(classes)].numpy()


def _load(path, size=224):
    from PIL import Image
    return featvis.param.image_tensor(Image.open(path).convert("RGB").resize((size, size)))[0]


def natural_folder(path, cls):
    folder = os.path.join(path, str(cls))
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    return torch.stack([_load(os.path.join(folder, f)) for f in files])


def class_photos(path, classes) -> torch.Tensor:
    """(N, 3, 224, 224): the photo of each class from a flat folder of one photo per class whose
    file names sort by synset (``n01440764_tench.JPEG`` ...), so position = class index."""
    files = sorted(f for f in os.listdir(path) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if len(files) != 1000:
        raise SystemExit(f"--images {path}: expected 1000 photos (one per class, names sorted by synset), found {len(files)}")
    return torch.stack([_load(os.path.join(path, files[c])) for c in classes])


def score(name, model, images, per_step, nets, classes, args, faithful_to=None):
    """One table row: ``images`` (one per class, rendered on ``model``) read by each judge and by
    ``model`` itself, their spectrum slope, saturation, robustness, and with ``--natural`` their
    faithfulness to the classes' photos (``faithful_to``: the photos to compare image i with)."""
    net = nets.wrapped(model)
    by_judge = {j: judge(nets.raw(j), images, classes, args.views) for j in judges_of(model)}
    row = dict(preset=name, model=model, s_per_step=per_step, judges=by_judge,
               read=np.mean(list(by_judge.values()), 0),
               own=own_probability(net, images, classes),
               slope=np.atleast_1d(metrics.spectrum_slope(images)),
               saturation=np.atleast_1d(metrics.saturation(images)))
    if args.robust_n:
        row["robust"] = np.atleast_1d(metrics.robustness(net, images, class_logit(classes), n=args.robust_n))
    if args.natural:
        photos = faithful_to or [natural_folder(args.natural, c) for c in classes]
        row["faithful"] = np.array([metrics.faithfulness(net, class_logit(c), images[i:i + 1], photos[i])
                                    for i, c in enumerate(classes)])
    return row


def render_classes(preset, model, classes, steps, size, seed=0, progress=False):
    """(images, seconds per step): ``preset`` (a name or a :class:`featvis.presets.Preset`) on ``model``."""
    kw = presets.resolve(preset, batch=len(classes), steps=steps, size=size)
    t0 = time.perf_counter()
    result = featvis.render(model, class_logit(classes), seed=seed, progress=progress, **kw)
    return result.images, (time.perf_counter() - t0) / steps


def run_preset(name, model, nets, classes, args):
    images, per_step = render_classes(name, nets.wrapped(model), classes, args.steps, args.size, args.seed, args.progress)
    row = score(name, model, images, per_step, nets, classes, args)
    chans = []
    if args.channels:
        for layer, cs in CHANNEL_UNITS[model]:
            kw = presets.resolve(name, batch=len(cs), steps=args.channel_steps, size=args.channel_size)
            chans.append((layer, cs, featvis.render(nets.wrapped(model), channel(layer, cs), seed=args.seed,
                                                    progress=args.progress, **kw).images))
    return row, images, chans


def run_lucent(python, nets, classes, args):
    """Lucent's defaults on MobileNetV2 (benchmarks/lucent_classes.py run by ``python``), one class
    at a time; or its saved output (``--lucent-images FILE``, written by lucent_classes.py)."""
    import subprocess
    import tempfile
    if args.lucent_images:
        data = torch.load(args.lucent_images, weights_only=True)
        if len(data["images"]) != len(classes):
            raise SystemExit(f"{args.lucent_images} holds {len(data['images'])} images for {len(classes)} classes")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "lucent.pt")
            cmd = [python, os.path.join(ROOT, "benchmarks", "lucent_classes.py"), "--classes", ",".join(map(str, classes)),
                   "--steps", str(args.steps), "--seed", str(args.seed), "--out", out]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
            data = torch.load(out, weights_only=True)
    # s/step of all the classes, as for featvis's one batch: Lucent renders them one after another
    row = score(f"lucent {data['lucent']} (defaults)", "mobilenet_v2", data["images"], data["seconds"] / args.steps,
                nets, classes, args)
    return row, data["images"], []


def run_natural(model, nets, classes, args):
    """The classes' own photos, scored like ``model``'s pictures (by ``model``'s judges): what a
    readable picture can hope for. With ``--natural`` their faithfulness is each photo against the
    NEXT class's photos: the score an unrelated natural image gets."""
    if args.images:
        images, photos = class_photos(args.images, classes), None
    else:
        photos = [natural_folder(args.natural, c) for c in classes]
        images = torch.stack([p[0] for p in photos])
    row = score("natural photos", model, images, float("nan"), nets, classes, args,
                faithful_to=photos[1:] + photos[:1] if photos else None)
    return row, images, []


def row_cells(r, n):
    """The markdown cells of one row (see :data:`COLUMNS`)."""
    judges = "; ".join(f"{j} {v.mean():.3f}" for j, v in r["judges"].items())
    return [r["preset"], r["model"], f"{r['read'].mean():.3f}", f"{(r['read'] >= 0.5).sum()}/{n}", judges,
            f"{r['own'].mean():.3f}", f"{np.median(r['slope']):.2f}", f"{r['saturation'].mean():.4f}",
            f"{np.median(r['robust']):.2f}" if "robust" in r else "-",
            f"{r['faithful'].mean():.3f}" if "faithful" in r else "-",
            f"{r['s_per_step']:.2f}" if np.isfinite(r["s_per_step"]) else "-"]


COLUMNS = ["preset", "model", "read (judges' mean)", ">=0.5", "per judge", "own p", "slope", "saturation",
           "robust", "faithful", "s/step"]


def append_csv(path, r, args):
    """One line per (preset, model) appended to ``path`` (header when new): the run's settings and
    the row's means, so that a sweep interrupted half-way keeps what it measured."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["preset", "model", "classes", "steps", "size", "views", "seed", "read", "read>=0.5",
                        "judges", "own", "slope", "saturation", "s_per_step"])
        w.writerow([r["preset"], r["model"], args.classes, args.steps, args.size or "preset", args.views, args.seed,
                    f"{r['read'].mean():.4f}", int((r["read"] >= 0.5).sum()),
                    " ".join(f"{j}={v.mean():.4f}" for j, v in r["judges"].items()),
                    f"{r['own'].mean():.4f}", f"{np.median(r['slope']):.3f}", f"{r['saturation'].mean():.5f}",
                    f"{r['s_per_step']:.3f}"])


def summary(rows, models):
    """Per preset: the judges' mean read on each model, their mean and the worst (the one a preset
    is chosen by)."""
    out = ["| preset | " + " | ".join(models) + " | mean | worst |", "|---" * (len(models) + 3) + "|"]
    for name in dict.fromkeys(r["preset"] for r in rows):
        by = {r["model"]: r["read"].mean() for r in rows if r["preset"] == name}
        vals = [by.get(m) for m in models]
        got = [v for v in vals if v is not None]
        out.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) +
                   f" | {np.mean(got):.3f} | {min(got):.3f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="lucid,fourier-crops,maco", help="comma-separated (default: lucid,fourier-crops,maco)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"rendering networks (default: {','.join(MODELS)})")
    ap.add_argument("--classes", type=int, default=len(CLASSES), help=f"the first N of the fixed list (default: {len(CLASSES)})")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224, help="image size (default: 224; the preset's own size with 0)")
    ap.add_argument("--views", type=int, default=16, help="random crops/flips each judge sees per picture (default: 16)")
    ap.add_argument("--robust-n", type=int, default=8, help="robustness draws (0: skip)")
    ap.add_argument("--channels", action="store_true", help="also render 3 channels of 3 layers per preset and model")
    ap.add_argument("--channel-steps", type=int, default=256)
    ap.add_argument("--channel-size", type=int, default=128)
    ap.add_argument("--images", metavar="DIR", help="one photo per class, names sorted by synset: the photos' reference rows")
    ap.add_argument("--natural", metavar="DIR", help="natural images per class (DIR/<class>/*.jpg) for faithfulness")
    ap.add_argument("--lucent-python", metavar="PY", help="a Python with torch-lucent: adds Lucent's defaults as a row")
    ap.add_argument("--lucent-images", metavar="FILE", help="Lucent's row from a file lucent_classes.py wrote (same classes, steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", default="quality_imagenet_sheet.png", help="labelled sheet (PNG)")
    ap.add_argument("--cell", type=int, default=128, help="sheet cell size in px (default: 128)")
    ap.add_argument("--csv", help="append one line per (preset, model) here")
    ap.add_argument("--json", help="write the per-image numbers here")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    args.size = args.size or None
    torch.manual_seed(args.seed)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise SystemExit(f"--models: no {bad[0]!r}; choose from {', '.join(MODELS)}")

    nets = Nets()
    labels = nets.labels()
    classes = CLASSES[:args.classes]
    rows, grid, captions, titles = [], [], [], []
    names = [n for n in args.presets.split(",") if n]  # none: only the Lucent / photo rows
    jobs = [(name, model) for name in names for model in models]
    if args.lucent_python or args.lucent_images:
        jobs.append(("lucent", "mobilenet_v2"))
    if args.natural or args.images:
        jobs += [("natural", model) for model in models]
    for name, model in jobs:
        if name == "lucent":
            row, images, chans = run_lucent(args.lucent_python, nets, classes, args)
        elif name == "natural":
            row, images, chans = run_natural(model, nets, classes, args)
        else:
            row, images, chans = run_preset(name, model, nets, classes, args)
        rows.append(row)
        if args.csv:
            append_csv(args.csv, row, args)
        print(f"{row['preset']} on {model}: read {row['read'].mean():.3f} "
              f"({', '.join(f'{j} {v.mean():.3f}' for j, v in row['judges'].items())}), "
              f"slope {np.median(row['slope']):.2f}, saturation {row['saturation'].mean():.4f}, "
              f"{row['s_per_step']:.2f} s/step", file=sys.stderr, flush=True)
        if name == "natural":  # scored in the table, not shown: the photos are not ours to publish
            continue
        grid.append(list(images) + [im for _, _, ims in chans for im in ims])
        captions.append([f"p={p:.2f}" for p in row["read"]] + [f"{l.split('.')[-1]}:{c}" for l, cs, _ in chans for c in cs])
        titles.append(f"{row['preset']} / {model}")

    size = args.size or "preset"
    print(f"\nclass visualizations: {len(classes)} classes, {args.steps} steps, {size} px, seed {args.seed}; "
          f"each judge over {args.views} crops/flips")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(row_cells(r, len(classes))) + " |")
    print()
    print(summary([r for r in rows if r["preset"] != "natural photos"], models))
    if grid:
        width = max(len(g) for g in grid)
        col_titles = [labels[c].split(",")[0] for c in classes] + [""] * (width - len(classes))
        grid = [g + [None] * (width - len(g)) for g in grid] if any(len(g) != width for g in grid) else grid
        captions = [c + [""] * (width - len(c)) for c in captions]
        featvis.figures.figure(grid, row_titles=titles, col_titles=col_titles, captions=captions,
                               cell=min(args.cell, args.size or args.cell), out=args.sheet)
        print(f"sheet: {args.sheet}")
    if args.json:
        def plain(v):
            return v.tolist() if isinstance(v, np.ndarray) else {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "classes": classes, "rows": [{k: plain(v) for k, v in r.items()} for r in rows]},
                      f, indent=1)


if __name__ == "__main__":
    main()
