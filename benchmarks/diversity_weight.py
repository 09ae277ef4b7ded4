"""How much objective the diversity term costs, and how alike the images stay, per diversity weight.

On a real ImageNet network (``../shared/models``: MobileNetV2), K images of one channel are rendered
with no diversity term, with featvis's relative weights (``objective + w * |objective| * diversity``,
:func:`featvis.objectives.scaled`) and with Lucid's fixed ``+ 100 * diversity``. Printed per setting:
the channel's mean value as a share of the plain render's, and the images' similarity in the layer
(minus featvis's diversity term: the mean cosine between the images' Gram matrices; lower = more
diverse). Run from the project root::

    python3 benchmarks/diversity_weight.py [--channels 5,40] [--steps 96] [--size 128]
"""
import argparse
import sys
from pathlib import Path

import torch

import featvis
from featvis.objectives import channel, diversity, scaled

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", default="net.features.12")
    ap.add_argument("--channels", default="5,40")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    sys.path.insert(0, str(SHARED))
    import imagenet_models  # a test asset, never imported by featvis itself
    torch.set_num_threads(2)
    net = featvis.wrap(imagenet_models.mobilenet_v2(), normalize=None, name="mobilenet_v2")
    K, layer = args.k, args.layer
    settings = [("none", None), ("0.25", 0.25), ("0.5", 0.5), ("1", 1.0), ("2", 2.0), ("fixed 100", "fixed")]
    print(f"{'channel':>7}  {'weight':<9}  {'objective / plain':>17}  {'Gram similarity':>15}")
    for c in map(int, args.channels.split(",")):
        unit = channel(layer, [c] * K)
        plain = None
        for label, w in settings:
            obj = unit if w is None else unit + 100 * diversity(layer) if w == "fixed" else \
                scaled(unit, diversity(layer), w, group=K, label="diversity")
            r = featvis.render(net, obj, param=featvis.param.fourier(args.size, batch=K), steps=args.steps,
                               seed=list(range(K)), progress=False, device="cpu")
            value = featvis.evaluate(net, unit, r.images).mean().item()
            plain = value if plain is None else plain
            similar = -featvis.evaluate(net, diversity(layer), r.images).mean().item()
            print(f"{c:>7}  {label:<9}  {value / plain:>17.3f}  {similar:>15.3f}", flush=True)


if __name__ == "__main__":
    main()
