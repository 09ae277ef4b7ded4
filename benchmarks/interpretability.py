"""Which pictures explain a channel? The machine interpretability score of every kind of explanation.

On real ImageNet nets of ../shared/models (MobileNetV2 and ResNet-50), an early, a middle and a
late layer of each, ``--channels`` channels per layer drawn with a fixed seed, photos from the
public ImageNet sample set (``--images``, one photo per class): the score
(:mod:`featvis.analysis.score`) of

- ``natural``: the top and bottom ``k`` photos of the explanation pool (the reference; people
  given these answered 92% right, given feature visualizations 82%: Borowski et al. 2021);
- each preset of ``--presets`` (one maximizing and one minimizing render per channel);
- ``div4``: the ``--preset auto`` recipe with 4 diverse images per side (against its 1);
- ``accentuate``: :func:`featvis.recipes.accentuate` of the channel's top (bottom) photo of the
  explanation pool, made to excite (not excite) the channel more;
- ``noise``: uniform noise images (must score near 0.5).

Lucent 0.1.8's defaults are Lucid's recipe (a 1/f Fourier image, decorrelated colour, the standard
transforms, Adam 0.05, 128 px): the ``lucid`` row, rendered by featvis; torch-lucent itself is not
installed on these machines.

The observer is the other network's pooled normalized features (MobileNetV2 is judged through
ResNet-50 and ResNet-50 through MobileNetV2). Every kind of a unit is scored on the same query
pairs, at every level of ``featvis.analysis.score.LEVELS``. Writes ``--json`` (every unit's scores)
and ``--figure`` (for a few units every kind side by side), prints the table (layer mean with a
95% bootstrap interval over channels).

``--speed`` instead times the scoring alone: 64 channels of MobileNetV2's middle layer against
``--photos`` photos (the issue's target: 1,000 photos in at most 2 minutes on the 2-core CPU).

    python3 benchmarks/interpretability.py --images /work/data/imagenet-sample           # the full spec
    python3 benchmarks/interpretability.py --images DIR --channels 8 --steps 128 --size 112 --photos 500
    python3 benchmarks/interpretability.py --images DIR --speed
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
for path in (os.path.join(ROOT, "..", "shared", "models"), "/work/shared/models"):
    if os.path.isdir(path):
        sys.path.insert(0, path)

import featvis  # noqa: E402
from featvis import presets  # noqa: E402
from featvis.analysis.score import LEVELS, Observer, read_photos, score  # noqa: E402
from featvis.analysis.topk import find_images  # noqa: E402
from featvis.jobs.job import unit_seed  # noqa: E402
from featvis.jobs.settings import batch_objective  # noqa: E402
from featvis.models import wrap  # noqa: E402

#: An early, a middle and a late block of each net (block outputs, as ``featvis layers`` marks them).
NETS = {
    "mobilenet_v2": {"layers": ["net.features.4", "net.features.10", "net.features.15"], "observer": "resnet50"},
    "resnet50": {"layers": ["net.layer1.2", "net.layer3.1", "net.layer4.2"], "observer": "mobilenet_v2"},
}


def load(name):
    import imagenet_models as im
    return wrap(getattr(im, name)(), normalize=None, name=f"imagenet-{name}")


def channels_of(model, layer, n, seed=0):
    from featvis.models.listing import probe_layer
    total = probe_layer(model, layer, 64, "cpu")[0]
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=g)[:n].tolist())


def recipe(name):
    """A shipped preset by name, else a variant of ``preset_sweep.py`` (``fcs``: fourier-crops
    revision 2, before its weight decay)."""
    if name in presets.PRESETS:
        return presets.get(name)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import preset_sweep
    table = preset_sweep.variants()
    if name not in table:
        raise SystemExit(f"no preset or sweep variant {name!r}")
    return table[name]


def render_kind(model, layer, chans, preset, steps, size, k=1, negative=False, seed=0):
    """(len(chans) * k, 3, S, S): ``preset``'s renders (``negative``: minimizing), featvis render's seeds."""
    n = len(chans) * k
    obj = batch_objective(layer, chans, k=k, negative=negative)
    seeds = [unit_seed(seed, layer, c, j, negative) for c in chans for j in range(k)]
    result = featvis.render(model, obj, **presets.resolve(recipe(preset), batch=n, steps=steps, size=size), seed=seeds,
                            progress=False)
    return result.images.detach().cpu()


def accentuated(model, layer, chans, photos, pool_images, steps, negative=False):
    """Each channel's top (bottom) photo of the explanation pool, accentuated towards (away from) it."""
    from featvis.recipes import accentuate
    obj = batch_objective(layer, chans, negative=negative)
    result = accentuate(model, obj, pool_images, steps=steps, seed=[unit_seed(0, layer, c, 0, negative) for c in chans],
                        progress=False)
    return result.images.detach().cpu()


def pool_photo(photos, layer, c, top, size):
    """The channel's top (or bottom) photo of the explanation pool, (3, size, size)."""
    from featvis.analysis.topk import load_image
    a = photos.acts(layer, c)[photos.explain]
    i = photos.explain[int(a.argmax() if top else a.argmin())]
    return load_image(photos.paths[int(i)], size)


def run_net(name, args, log):
    spec = NETS[name]
    model, observer_net = load(name), load(spec["observer"])
    observer = Observer(observer_net, size=args.observer_size, name=f"imagenet-{spec['observer']}")
    layers = [la for la in spec["layers"] if not args.layers or la.split(".")[-2] + "." + la.split(".")[-1] in args.layers
              or la in args.layers]
    units = {la: channels_of(model, la, args.channels, args.seed) for la in layers}
    paths = find_images(args.images)[:args.photos] if args.photos else find_images(args.images)
    t0 = time.perf_counter()
    photos = read_photos(model, units, paths, observer, size=args.size, k=args.k, seed=args.seed, progress=False)
    log(f"{name}: {len(photos.paths)} photos read in {time.perf_counter() - t0:.0f} s; observer layers {observer.layers}")
    kinds = {}
    for la, chans in units.items():
        for preset in args.presets:
            t0 = time.perf_counter()
            pos = render_kind(model, la, chans, preset, args.steps, args.size)
            neg = render_kind(model, la, chans, preset, args.steps, args.size, negative=True)
            kinds.setdefault(preset, {}).update({(la, c): (pos[i:i + 1], neg[i:i + 1]) for i, c in enumerate(chans)})
            log(f"  {la} {preset}: {time.perf_counter() - t0:.0f} s")
        if args.div4 and (not args.div4_layers or la in args.div4_layers or la.split(".", 1)[-1] in args.div4_layers):
            t0 = time.perf_counter()
            auto = presets.auto(name)
            pos = render_kind(model, la, chans, auto, args.steps, args.size, k=4)
            neg = render_kind(model, la, chans, auto, args.steps, args.size, k=4, negative=True)
            kinds.setdefault("div4", {}).update({(la, c): (pos[4 * i:4 * i + 4], neg[4 * i:4 * i + 4])
                                                 for i, c in enumerate(chans)})
            log(f"  {la} div4 ({auto}): {time.perf_counter() - t0:.0f} s")
        if args.accentuate:
            t0 = time.perf_counter()
            top = torch.stack([pool_photo(photos, la, c, True, args.size) for c in chans])
            bottom = torch.stack([pool_photo(photos, la, c, False, args.size) for c in chans])
            pos = accentuated(model, la, chans, photos, top, args.accentuate)
            neg = accentuated(model, la, chans, photos, bottom, args.accentuate, negative=True)
            kinds.setdefault("accentuate", {}).update({(la, c): (pos[i:i + 1], neg[i:i + 1]) for i, c in enumerate(chans)})
            log(f"  {la} accentuate: {time.perf_counter() - t0:.0f} s")
        g = torch.Generator().manual_seed(args.seed)
        kinds.setdefault("noise", {}).update({(la, c): (torch.rand(1, 3, args.size, args.size, generator=g),
                                                        torch.rand(1, 3, args.size, args.size, generator=g))
                                              for c in chans})
    result = score(model, units, None, observer, kinds, k=args.k, tasks=args.tasks, seed=args.seed, read=photos,
                   progress=False)
    return units, kinds, photos, result


def speed(args, log):
    """Scoring alone: 64 channels of MobileNetV2's middle layer against ``--photos`` photos."""
    model, observer_net = load("mobilenet_v2"), load("resnet50")
    observer = Observer(observer_net, size=args.observer_size, name="imagenet-resnet50")
    layer = NETS["mobilenet_v2"]["layers"][1]
    units = {layer: list(range(64))}
    paths = find_images(args.images)[:args.photos or 1000]
    g = torch.Generator().manual_seed(0)
    fake = {(layer, c): (torch.rand(1, 3, args.size, args.size, generator=g),
                         torch.rand(1, 3, args.size, args.size, generator=g)) for c in range(64)}
    t0, c0 = time.perf_counter(), time.process_time()
    result = score(model, units, paths, observer, {"featvis": fake}, k=args.k, tasks=args.tasks, size=args.size,
                   progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    log(f"scoring 64 channels of mobilenet_v2 {layer} against {len(result.photos.paths)} photos "
        f"({args.size} px, observer imagenet-resnet50 at {args.observer_size} px, layers {observer.layers}), "
        f"natural + one render per side, {args.tasks} tasks x {len(LEVELS)} levels: {seconds:.1f} s wall, {cpu:.1f} s CPU "
        f"(photos read and embedded: {result.photos.seconds:.1f} s) on {torch.get_num_threads()} thread(s)")
    return seconds


def table(name, units, result, log):
    rows = {}
    for la in units:
        summary = result.summary(la)
        for kind, per in summary.items():
            rows.setdefault((la, kind), per)
    kinds = result.kinds()
    for level in LEVELS:
        log(f"\n{name}, {level} queries: mean score over channels [95% bootstrap interval]")
        log("| layer | " + " | ".join(kinds) + " |")
        log("|---" * (len(kinds) + 1) + "|")
        for la in units:
            cells = [f"{rows[(la, k)][level].mean:.2f} [{rows[(la, k)][level].low:.2f}, {rows[(la, k)][level].high:.2f}]"
                     if (la, k) in rows else "-" for k in kinds]
            log(f"| {la} | " + " | ".join(cells) + " |")


def figure(all_results, path, per_net=2):
    from featvis.figures import figure as draw
    rows, titles, cols = [], [], None
    for name, (units, kinds, photos, result) in all_results.items():
        for la, chans in [list(units.items())[len(units) // 2]]:  # the middle layer
            for c in chans[:per_net]:
                from featvis.analysis.topk import load_image
                a = photos.acts(la, c)[photos.explain]
                top = photos.explain[int(a.argmax())]
                bottom = photos.explain[int(a.argmin())]
                size = kinds["noise"][(la, c)][0].shape[-1]
                row = [load_image(photos.paths[int(top)], size), load_image(photos.paths[int(bottom)], size)]
                names = ["natural +", "natural -"]
                for kind, table_ in kinds.items():
                    pos, neg = table_[(la, c)]
                    row += [pos[0], neg[0]]
                    names += [f"{kind} +", f"{kind} -"]
                rows.append(row)
                hard = result.units[(la, c)]
                titles.append(f"{name}\n{la}:{c}\nnat {hard['natural']['hard'].mean:.2f}")
                cols = names
    draw(rows, row_titles=titles, col_titles=cols, cell=96, out=path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="ImageNet photos (e.g. /work/data/imagenet-sample)")
    ap.add_argument("--nets", default="mobilenet_v2,resnet50")
    ap.add_argument("--layers", default="", help="only these layers (e.g. features.10,layer3.1)")
    ap.add_argument("--channels", type=int, default=32, help="channels per layer (default: 32)")
    ap.add_argument("--presets", default="lucid,maco,fourier-crops")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--observer-size", type=int, default=160)
    ap.add_argument("--photos", type=int, default=0, help="use the first N photos (default: all)")
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-div4", dest="div4", action="store_false")
    ap.add_argument("--div4-layers", default="", help="diversity 4 only on these layers (default: every layer)")
    ap.add_argument("--accentuate", type=int, default=256, metavar="STEPS", help="0: leave out")
    ap.add_argument("--speed", action="store_true", help="only time the scoring (64 channels, --photos photos)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None)
    args = ap.parse_args()
    args.presets = [p for p in args.presets.split(",") if p]
    args.layers = [la for la in args.layers.split(",") if la]
    args.div4_layers = [la for la in args.div4_layers.split(",") if la]
    torch.manual_seed(0)

    def log(line):
        print(line, flush=True)

    if args.speed:
        speed(args, log)
        return
    log(f"channels {args.channels}/layer, {args.steps} steps, {args.size} px, observer {args.observer_size} px, "
        f"k {args.k}, {args.tasks} tasks, photos {args.photos or 'all'}, torch threads {torch.get_num_threads()}")
    results, out = {}, {}
    for name in args.nets.split(","):
        units, kinds, photos, result = run_net(name, args, log)
        results[name] = (units, kinds, photos, result)
        table(name, units, result, log)
        out[name] = {"units": {f"{la}:{c}": {kind: {lv: s.to_json() for lv, s in per.items()} for kind, per in kinds_.items()}
                               for (la, c), kinds_ in result.units.items()},
                     "summary": {la: {kind: {lv: s.to_json() for lv, s in per.items()}
                                      for kind, per in result.summary(la).items()} for la in units}}
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "nets": out}, f, indent=1)
    if args.figure:
        figure(results, args.figure)
        log(f"figure -> {args.figure}")


if __name__ == "__main__":
    main()
