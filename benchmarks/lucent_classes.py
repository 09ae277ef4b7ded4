"""Class visualizations of the shared ImageNet MobileNetV2 with Lucent's defaults (for a side-by-side).

Run by a Python that has Lucent (``pip install torch-lucent``); ``benchmarks/quality_imagenet.py
--lucent-python PY`` runs it and scores its pictures like featvis's. Lucent's defaults as its
``render_vis`` applies them: a 128 px Fourier image with decorrelated colour, its standard
transforms, Adam 0.05, upsampled to 224 px before the model; one class at a time (``render_vis``
optimizes one objective per call). ``preprocess=False`` because this MobileNetV2 takes [0, 1] RGB
and normalizes itself. Writes ``{"images": (N, 3, 128, 128) in [0, 1], "seconds": wall time of
the renders, "lucent": version}`` to ``--out``. featvis is not imported.
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "models"))
sys.path.insert(0, "/work/shared/models")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", required=True, help="comma-separated ImageNet class indices")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import imagenet_models as im
    import lucent
    from lucent.optvis import render

    model = im.mobilenet_v2().eval()
    images, t0 = [], time.perf_counter()
    for c in map(int, args.classes.split(",")):
        torch.manual_seed(args.seed)  # Lucent draws its initial image and transforms from torch's global RNG
        # "labels" is the last hooked module's output: the logits of the final Linear.
        out = render.render_vis(model, f"labels:{c}", thresholds=(args.steps,), preprocess=False,
                                progress=False, show_image=False)
        images.append(torch.from_numpy(out[-1]).permute(0, 3, 1, 2).float())  # (1, 3, H, W)
    seconds = time.perf_counter() - t0
    torch.save({"images": torch.cat(images), "seconds": seconds,
                "lucent": getattr(lucent, "__version__", "unknown")}, args.out)


if __name__ == "__main__":
    main()
