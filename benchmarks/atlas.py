"""Time an activation atlas on a real ImageNet net, and say where the time goes.

The issue's benchmark: a 20x20 grid from 1,000 photos, rendered at 128 px; CPU minutes and the
share of the time spent on activations (one forward per photo), layout (UMAP) and rendering (the
cells' direction objectives). It also measures the atlas's faithfulness on the real net (the
diagonal of :func:`featvis.analysis.atlas.direction_scores` against grid neighbours) and can save
the atlas image for the README.

    nice -n 10 python benchmarks/atlas.py --images /work/data/imagenet-sample --steps 96 \
        --out docs/figures/atlas_mobilenet_v2.png

The nets come from ../shared/models (test assets, never imported by featvis itself).
"""
import argparse
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shared_models_plugin  # noqa: E402,F401  (registers imagenet-mobilenet-v2, imagenet-squeezenet, imagenet-resnet50)

import numpy as np  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="a folder of photos (e.g. /work/data/imagenet-sample)")
    p.add_argument("--model", default="imagenet-mobilenet-v2")
    p.add_argument("--layer", default="net.features.12.conv.0", help="default: a middle layer of MobileNetV2 (576 ch, ReLU6)")
    p.add_argument("--grid", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--per-image", type=int, default=8)
    p.add_argument("--method", default="umap")
    p.add_argument("--cls", type=int, default=None, help="a class-filtered atlas of this class")
    p.add_argument("--cache", default=None, help="a .npz cache of points and layout")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=None, help="save the assembled atlas here (PNG)")
    p.add_argument("--figure", default=None, help="save the matplotlib figure here (PNG/PDF/SVG)")
    p.add_argument("--cell-px", type=int, default=48, help="cell size of the saved atlas image (default: 48)")
    args = p.parse_args(argv)

    import torch

    import featvis
    from featvis.analysis import atlas as A

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load0 = os.getloadavg()
    model = featvis.load_model(args.model)
    names = None
    if args.cls is not None:
        import imagenet_models
        names = imagenet_models.labels()
    c0, w0 = cpu_seconds(), time.perf_counter()
    res = A.atlas(model, args.layer, args.images, grid=args.grid, size=args.size, steps=args.steps,
                  per_image=args.per_image, method=args.method, cls=args.cls, cache=args.cache, batch=args.batch,
                  class_name=names[args.cls] if names else None, device="cpu")
    c1, w1 = cpu_seconds(), time.perf_counter()
    vectors = np.stack([c.vector for c in res.cells])
    scores = A.direction_scores(model, args.layer, res.renders, vectors, centre=res.points.acts.mean(0), device="cpu")
    share, margin = A.neighbour_diagonal(res.cells, scores)
    share_r, margin_r = A.neighbour_diagonal(res.cells, scores, by="render")
    load1 = os.getloadavg()
    t = res.timings
    total = sum(t.values())
    print(f"{args.model} {args.layer}: {len(res.points.photos)} photos x {args.per_image} positions = {len(res.points)} "
          f"points; {args.grid}x{args.grid} grid, {len(res.cells)} cells rendered at {args.size} px, {args.steps} steps")
    print(f"wall {w1 - w0:.0f} s, CPU {(c1 - c0) / 60:.1f} min (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after")
    for k in ("activations", "layout", "rendering"):
        print(f"  {k:12s} {t[k]:8.1f} s  {100 * t[k] / total:5.1f}%")
    print(f"diagonal (centred cosine) against grid neighbours: by direction {share:.2f} (margin {margin:.3f}), "
          f"by render {share_r:.2f} (margin {margin_r:.3f})")
    if args.out:
        from featvis.io import save_image
        save_image(res.image(args.cell_px), args.out)
        print(f"wrote {args.out}")
    if args.figure:
        res.save(args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
