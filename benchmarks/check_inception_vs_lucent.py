"""Check featvis's InceptionV1 against Lucent's, layer by layer, on one random state dict.

Run with the Python that has torch-lucent 0.1.8 (never a featvis dependency):

    /work/lucent-venv/bin/python benchmarks/check_inception_vs_lucent.py

Builds Lucent's InceptionV1 with random weights, saves its state dict, loads that file into
``featvis.load_model("inceptionv1", weights=PATH)`` (strict keys), feeds both the same [0, 1] images
(Lucent's model takes the graph's [-117, 138] pixels, which Lucent's render makes with
``255 * x - 117``; featvis's model does that itself) and compares the outputs of conv2d0..2, every
mixed layer, the logits, and the input gradient of one channel. Exits 1 if any differs by more
than float32 tolerance.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's featvis, not an installed one

import featvis  # noqa: E402
from featvis.models.inception import MIXED  # noqa: E402

try:
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1
except ImportError:
    sys.exit("this check needs torch-lucent 0.1.8: run it with /work/lucent-venv/bin/python")

LOGITS = "softmax2_pre_activation_matmul"
LAYERS = ["conv2d0", "conv2d1", "conv2d2"] + [spec[0] for spec in MIXED]
#: Relative tolerance (max |difference| / max |reference|) for float32 on the same device.
RTOL = 1e-4


class _Stop(Exception):
    pass


def lucent_activations(net, pixels, layers, keep_graph=False):
    """Outputs of Lucent's modules by name; the pass stops after the last one (Lucent's 7x7
    average pool only works at 224 x 224, so smaller images stop before it)."""
    out, handles = {}, []

    def hook(name):
        def fn(module, inputs, output):
            out[name] = output if keep_graph else output.detach().clone()
            if len(out) == len(layers):
                raise _Stop
        return fn

    for name in layers:
        handles.append(getattr(net, name).register_forward_hook(hook(name)))
    try:
        net(pixels)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def compare(name, ours, ref):
    diff = (ours - ref).abs().max().item()
    scale = ref.abs().max().item()
    rel = diff / scale if scale > 0 else diff
    ok = ours.shape == ref.shape and rel <= RTOL
    print(f"{name:32s} {str(tuple(ref.shape)):22s} max|ref| {scale:10.4g}  max|diff| {diff:10.3g}  "
          f"rel {rel:9.2e}  {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    lucent = LucentInceptionV1(pretrained=False, redirected_ReLU=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lucent_inceptionv1_random.pth"
        torch.save(lucent.state_dict(), path)
        ours = featvis.load_model("inceptionv1", weights=str(path), device="cpu")
    print(f"featvis from {Path(featvis.__file__).parent}")
    print(f"loaded Lucent's random state dict ({len(lucent.state_dict())} tensors) into featvis strictly\n")

    all_ok = True
    # 224: the full graph incl. logits; 128: the render default size (Lucent stops at its avg pool).
    for size, layers in ((224, LAYERS + [LOGITS]), (128, LAYERS)):
        images = torch.rand(args.batch, 3, size, size)  # [0, 1], as featvis feeds every model
        ref = lucent_activations(lucent, images * 255 - 117, layers)
        got = featvis.activations(ours, images, layers)
        print(f"size {size}x{size}, batch {args.batch}")
        for name in layers:
            all_ok &= compare(name, got[name], ref[name])
        print()

    # Backward: the input gradient of one mixed4a channel (plain ReLU on both sides).
    images = torch.rand(2, 3, 224, 224)
    x_ref, x_ours = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    lucent_activations(lucent, x_ref * 255 - 117, ["mixed4a"], keep_graph=True)["mixed4a"][:, 7].mean().backward()
    with featvis.capture(ours, ["mixed4a"]) as run:
        run(x_ours)["mixed4a"][:, 7].mean().backward()
    all_ok &= compare("d mean(mixed4a[:, 7]) / d image", x_ours.grad, x_ref.grad)

    print("\nall layers agree" if all_ok else "\nMISMATCH: see above")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
