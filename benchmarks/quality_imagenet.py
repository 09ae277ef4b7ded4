"""Can people (and another network) read featvis's pictures of a real ImageNet network?

Class visualizations of a fixed list of ImageNet classes on ``imagenet_models.mobilenet_v2()``
(ImageNet-trained, ../shared/models), one image per class in one batch, for each preset side by
side, scored by:

- ``squeezenet``: a different ImageNet network (``imagenet_models.squeezenet()``) reading each
  picture through ``--views`` random crops (60-100% of the side, resized to 224 px) and flips: the
  mean probability of the target class (1.0: always read as its class). A picture that only the
  network it was made for reads is an adversarial accident, not a readable picture.
- ``mobilenet``: the rendering network's own probability of the target class (no transform).
- ``slope``: :func:`featvis.metrics.spectrum_slope` (natural images about -2, noise about 0).
- ``saturation``: :func:`featvis.metrics.saturation`, the share of pixel values pinned at 0 or 1.
- ``robust``: :func:`featvis.metrics.robustness` of the class logit (jitter/scale/rotate).
- ``faithful``: :func:`featvis.metrics.faithfulness` against the classes' natural images, when a
  folder of them is given (``--natural DIR`` with one sub-folder per class index, e.g. ``DIR/11/*.jpg``).
- ``s/step``: seconds per optimization step (the whole batch), wall time.

Two reference rows: with ``--natural DIR`` the classes' photos themselves (the first of each
folder), scored the same way (what a readable picture can hope for; their ``faithful`` is each
photo against the next class's photos: what an unrelated photo scores); with ``--lucent-python PY``
(a Python with ``torch-lucent``) Lucent's defaults, one class at a time
(``benchmarks/lucent_classes.py``; ``--lucent-images FILE`` scores a file it wrote earlier).

``--channels`` adds channel visualizations of a few MobileNetV2 layers per preset to the sheet
(scored by robustness and slope only: no class to read). The labelled sheet is written to
``--sheet`` (one row per preset, the squeezenet probability under each picture).

Run from the repository root (2 quiet CPU cores: about 0.8 s per step for 20 classes at 224 px,
7 minutes per preset at 512 steps; maco about twice that):

    python3 benchmarks/quality_imagenet.py                                    # 20 classes, 512 steps, 224 px
    python3 benchmarks/quality_imagenet.py --classes 4 --steps 64 --size 128  # a quick look
"""
from __future__ import annotations

import argparse
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
from featvis import presets
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
#: MobileNetV2 layers (torchvision module paths under the wrapper) and channels for --channels.
CHANNEL_UNITS = [("net.features.6", [0, 1, 2]), ("net.features.12", [0, 1, 2]), ("net.features.16", [0, 1, 2])]


def load_models():
    import imagenet_models as im
    mobilenet = featvis.wrap(im.mobilenet_v2(), normalize=None, name="mobilenet_v2")
    return mobilenet, im.squeezenet(), im.labels()


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


def natural_folder(path, cls):
    from PIL import Image
    folder = os.path.join(path, str(cls))
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg", ".jpeg")))
    return torch.stack([featvis.param.image_tensor(Image.open(os.path.join(folder, f)).convert("RGB").resize((224, 224)))[0]
                        for f in files])


def _worker(name, classes, args):
    """One preset in its own process (``--jobs``): models loaded there, one torch thread."""
    torch.set_num_threads(max(1, args.threads))
    mobilenet, squeezenet, _ = load_models()
    return run_preset(name, mobilenet, squeezenet, classes, args)


def score(name, images, per_step, mobilenet, squeezenet, classes, args, faithful_to=None):
    """One table row: ``images`` (one per class) read by SqueezeNet and by MobileNetV2, their
    spectrum slope, saturation and robustness, and with ``--natural`` their faithfulness to the
    classes' photos (``faithful_to``: the photos to compare image i with, default its own class's)."""
    obj = class_logit(classes)
    row = dict(preset=name, s_per_step=per_step,
               squeezenet=judge(squeezenet, images, classes, args.views),
               mobilenet=own_probability(mobilenet, images, classes),
               slope=np.atleast_1d(metrics.spectrum_slope(images)),
               saturation=np.atleast_1d(metrics.saturation(images)),
               robust=np.atleast_1d(metrics.robustness(mobilenet, images, obj, n=args.robust_n)))
    if args.natural:
        photos = faithful_to or [natural_folder(args.natural, c) for c in classes]
        row["faithful"] = np.array([metrics.faithfulness(mobilenet, class_logit(c), images[i:i + 1], photos[i])
                                    for i, c in enumerate(classes)])
    return row


def run_preset(name, mobilenet, squeezenet, classes, args):
    kw = presets.resolve(name, batch=len(classes), steps=args.steps, size=args.size)
    t0 = time.perf_counter()
    result = featvis.render(mobilenet, class_logit(classes), seed=args.seed, progress=args.progress, **kw)
    per_step = (time.perf_counter() - t0) / args.steps
    row = score(name, result.images, per_step, mobilenet, squeezenet, classes, args)
    chans = []
    if args.channels:
        for layer, cs in CHANNEL_UNITS:
            kw = presets.resolve(name, batch=len(cs), steps=args.channel_steps, size=args.channel_size)
            chans.append((layer, cs, featvis.render(mobilenet, channel(layer, cs), seed=args.seed,
                                                    progress=args.progress, **kw).images))
    return row, result.images, chans


def run_lucent(python, mobilenet, squeezenet, classes, args):
    """Lucent's defaults (benchmarks/lucent_classes.py run by ``python``), one class at a time; or
    its saved output (``--lucent-images FILE``, written by lucent_classes.py for these classes)."""
    import subprocess
    import tempfile
    if args.lucent_images:
        data = torch.load(args.lucent_images, weights_only=True)
        if len(data["images"]) != len(classes):
            raise SystemExit(f"{args.lucent_images} holds {len(data['images'])} images for {len(classes)} classes")
        return _lucent_row(data, mobilenet, squeezenet, classes, args)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "lucent.pt")
        cmd = [python, os.path.join(ROOT, "benchmarks", "lucent_classes.py"), "--classes", ",".join(map(str, classes)),
               "--steps", str(args.steps), "--seed", str(args.seed), "--out", out]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        data = torch.load(out, weights_only=True)
    return _lucent_row(data, mobilenet, squeezenet, classes, args)


def _lucent_row(data, mobilenet, squeezenet, classes, args):
    # s/step of all the classes, as for featvis's one batch: Lucent renders them one after another
    row = score(f"lucent {data['lucent']} (defaults)", data["images"], data["seconds"] / args.steps,
                mobilenet, squeezenet, classes, args)
    return row, data["images"], []


def run_natural(mobilenet, squeezenet, classes, args):
    """The classes' own photos (``--natural``), scored like the pictures: what a readable picture
    can hope for. Their faithfulness is each photo against the NEXT class's photos: the score an
    unrelated natural image gets."""
    photos = [natural_folder(args.natural, c) for c in classes]
    images = torch.stack([p[0] for p in photos])
    row = score("natural photos", images, float("nan"), mobilenet, squeezenet, classes, args,
                faithful_to=photos[1:] + photos[:1])
    return row, images, []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="lucid,fourier-crops,maco", help="comma-separated (default: lucid,fourier-crops,maco)")
    ap.add_argument("--classes", type=int, default=len(CLASSES), help=f"the first N of the fixed list (default: {len(CLASSES)})")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224, help="image size (default: 224; the preset's own size with 0)")
    ap.add_argument("--views", type=int, default=16, help="random crops/flips squeezenet sees per picture (default: 16)")
    ap.add_argument("--robust-n", type=int, default=8)
    ap.add_argument("--channels", action="store_true", help="also render 3 channels of 3 MobileNetV2 layers per preset")
    ap.add_argument("--channel-steps", type=int, default=256)
    ap.add_argument("--channel-size", type=int, default=128)
    ap.add_argument("--natural", metavar="DIR", help="natural images per class (DIR/<class>/*.jpg) for faithfulness")
    ap.add_argument("--lucent-python", metavar="PY", help="a Python with torch-lucent: adds Lucent's defaults as a row")
    ap.add_argument("--lucent-images", metavar="FILE", help="Lucent's row from a file lucent_classes.py wrote (same classes, steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", default="quality_imagenet_sheet.png", help="labelled sheet (PNG)")
    ap.add_argument("--json", help="write the per-image numbers here")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="presets rendered at once, each in its own process (default: 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process with --jobs (default: 1)")
    args = ap.parse_args(argv)
    args.size = args.size or None
    torch.manual_seed(args.seed)

    mobilenet, squeezenet, labels = load_models()
    classes = CLASSES[:args.classes]
    rows, grid, captions, titles = [], [], [], []
    names = [n for n in args.presets.split(",") if n]  # none: only the Lucent / natural rows
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            done = [pool.submit(_worker, name, classes, args) for name in names]
            results = [f.result() for f in done]
    else:
        results = [run_preset(name, mobilenet, squeezenet, classes, args) for name in names]
    if args.lucent_python or args.lucent_images:
        names.append("lucent")
        results.append(run_lucent(args.lucent_python, mobilenet, squeezenet, classes, args))
    if args.natural:
        names.append("natural")
        results.append(run_natural(mobilenet, squeezenet, classes, args))
    for name, (row, images, chans) in zip(names, results):
        rows.append(row)
        print(f"{row['preset']}: squeezenet {row['squeezenet'].mean():.3f}, slope {np.median(row['slope']):.2f}, "
              f"{row['s_per_step']:.2f} s/step", file=sys.stderr, flush=True)
        if name == "natural":  # scored in the table, not shown: the photos are not ours to publish
            continue
        grid.append(list(images) + [im for _, _, ims in chans for im in ims])
        captions.append([f"p={p:.2f}" for p in row["squeezenet"]] + [f"{l.split('.')[-1]}:{c}" for l, cs, _ in chans for c in cs])
        titles.append(row["preset"])

    size = args.size or "preset"
    print(f"\nmobilenet_v2 class visualizations: {len(classes)} classes, {args.steps} steps, {size} px, seed {args.seed}; "
          f"squeezenet over {args.views} crops/flips")
    cols = ["preset", "squeezenet", ">=0.5", "mobilenet", "slope", "saturation", "robust"] + \
           (["faithful"] if args.natural else []) + ["s/step"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        cells = [r["preset"], f"{r['squeezenet'].mean():.3f}", f"{(r['squeezenet'] >= 0.5).sum()}/{len(classes)}",
                 f"{r['mobilenet'].mean():.3f}", f"{np.median(r['slope']):.2f}", f"{r['saturation'].mean():.3f}",
                 f"{np.median(r['robust']):.2f}"] + ([f"{r['faithful'].mean():.3f}"] if args.natural else []) + \
                [f"{r['s_per_step']:.2f}" if np.isfinite(r["s_per_step"]) else "-"]
        print("| " + " | ".join(cells) + " |")
    col_titles = [labels[c].split(",")[0] for c in classes] + [f"{l.split('.')[-1]}:{c}" for l, cs in CHANNEL_UNITS for c in cs][:len(grid[0]) - len(classes)]
    cell = min(128, args.size or 128)
    featvis.figures.figure(grid, row_titles=titles, col_titles=col_titles, captions=captions, cell=cell, out=args.sheet)
    print(f"sheet: {args.sheet}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "classes": classes,
                       "rows": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows]}, f, indent=1)


if __name__ == "__main__":
    main()
