"""Time an activation atlas on a real ImageNet net, and say where the time goes.

The issue's benchmark: a 20x20 grid from 1,000 photos, rendered at 128 px; CPU minutes and the
share of the time spent on activations (one forward per photo), layout (UMAP) and rendering (the
cells' direction objectives). It also measures the atlas's faithfulness on the real net (the
diagonal of :func:`featvis.analysis.atlas.direction_scores` against grid neighbours) and can save
the atlas image for the README.

    nice -n 10 python benchmarks/atlas.py --images /work/data/imagenet-sample --steps 64 --max-cells 32
    nice -n 10 python benchmarks/atlas.py --images /work/data/imagenet-sample --cache mnv2.npz --size 64 \
        --steps 64 --out docs/figures/atlas_mobilenet_v2.png

``--max-cells`` renders only some cells and extrapolates (to all cells and ``--full-steps``): on a
shared 2-core machine the whole atlas at 256 steps is hours of wall time.

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
    p.add_argument("--cache", default=None, help="a .npz cache of points and layout (reused: then those phases cost ~0)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-cells", type=int, default=None,
                   help="render only this many cells and extrapolate the rendering time to all of them")
    p.add_argument("--full-steps", type=int, default=256, help="extrapolate the rendering to this many steps (default 256)")
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
    classes = [args.cls] if args.cls is not None else []
    phases = {}

    def timed(name, fn):
        c, w = cpu_seconds(), time.perf_counter()
        out = fn()
        phases[name] = (cpu_seconds() - c, time.perf_counter() - w)
        return out

    pts = timed("activations", lambda: A._cached_points(model, args.layer, args.images, 224, args.per_image, classes, 0,
                                                        args.batch, "cpu", True, args.cache))
    timed("layout", lambda: A.layout(pts, args.method, 0))
    if args.cache and pts._dirty:
        A.save_points(pts, args.cache)
    cells = A.grid_cells(pts, args.grid, 3, args.cls)
    todo = cells[:args.max_cells] if args.max_cells else cells
    renders = timed("rendering", lambda: A.render_cells(model, args.layer, todo, args.grid, args.size, args.steps,
                                                        seed=0, batch=args.batch, device="cpu"))
    scale = len(cells) / len(todo) * args.full_steps / args.steps
    vectors = np.stack([c.vector for c in todo])
    scores = A.direction_scores(model, args.layer, renders, vectors, centre=pts.acts.mean(0), device="cpu")
    share, margin = A.neighbour_diagonal(todo, scores)
    share_r, margin_r = A.neighbour_diagonal(todo, scores, by="render")
    load1 = os.getloadavg()
    print(f"{args.model} {args.layer}: {len(pts.photos)} photos x {args.per_image} positions = {len(pts)} points; "
          f"{args.grid}x{args.grid} grid, {len(cells)} cells with >= 3 points; rendered {len(todo)} at {args.size} px, "
          f"{args.steps} steps (batch {args.batch})")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {load0[0]:.1f} before, {load1[0]:.1f} after"
          + (" (points and layout from the cache)" if not pts._dirty else ""))
    full = dict(phases)
    full["rendering"] = (phases["rendering"][0] * scale, phases["rendering"][1] * scale)
    for title, table in (("measured", phases), (f"all {len(cells)} cells at {args.full_steps} steps (rendering x "
                                                 f"{scale:.2f})", full)):
        cpu_total = sum(c for c, _ in table.values())
        print(f"{title}: CPU {cpu_total / 60:.1f} min, wall {sum(w for _, w in table.values()) / 60:.1f} min")
        for k in ("activations", "layout", "rendering"):
            c, w = table[k]
            print(f"  {k:12s} CPU {c:8.1f} s ({100 * c / max(cpu_total, 1e-9):5.1f}%)   wall {w:8.1f} s")
    print(f"diagonal (centred cosine) against grid neighbours: by direction {share:.2f} (margin {margin:.3f}), "
          f"by render {share_r:.2f} (margin {margin_r:.3f})")
    if args.out or args.figure:
        res = A.Atlas(str(model.name), args.layer, args.grid, pts, todo, renders, args.cls,
                      names[args.cls] if names else None, settings={"method": args.method})
        if args.out:
            from featvis.io import save_image
            save_image(res.image(args.cell_px), args.out)
            print(f"wrote {args.out}")
        if args.figure:
            res.save(args.figure)
            print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
