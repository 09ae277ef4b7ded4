"""The floor: forward + backward of InceptionV1 truncated at a layer, with respect to the input only.

No feature-visualization step can beat this on the same hardware: no param, no transforms, no
hooks, no optimizer, just the model's own operations up to ``layer`` (a ``torch.fx`` cut of the
model, checked equal to the full model's activation there) and the gradient of one channel's
spatial mean per image with respect to a fixed (B, 3, size, size) input. Weights get no gradients.
The memory format is the one featvis picks for the device (``featvis.accel.CHANNELS_LAST``), so
that the floor gets every kernel-level speed-up featvis gets.

    python3 benchmarks/floor.py --layer mixed4a --batch 16 --size 224

``compare_lucent.py`` imports :func:`floor_times` to put featvis's step time next to it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's featvis

import featvis  # noqa: E402
from featvis.accel import CHANNELS_LAST, truncate  # noqa: E402
from featvis.hooks import capture  # noqa: E402


def floor_step(model: torch.nn.Module, layer: str, batch: int, size: int, seed: int = 0,
               channels_last=None):
    """A function that runs one floor step: the truncated forward, then backward to the input.

    Image i maximizes channel i of ``layer`` (as a batched featvis render of channels 0..B-1 does).
    ``channels_last``: None for featvis's choice on the model's device.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    device = next(model.parameters()).device
    if channels_last is None:
        channels_last = CHANNELS_LAST.get(device.type, False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    prefix = truncate(model, [layer])
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=gen).to(device).contiguous(memory_format=fmt).requires_grad_()
    channels = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    with torch.no_grad():  # the cut must compute what the whole model computes there
        with capture(model, [layer]) as run:
            want = run(x[:1])[layer]
        got = prefix(x[:1])[layer]  # (outside the block: the cut shares the hooked modules)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), "truncated model differs from the model"

    def step():
        act = prefix(x)[layer]  # (B, C, H, W)
        # gather: cheaper in the backward than act[arange(B), channels], whose backward accumulates
        value = act.gather(1, channels.expand(-1, 1, *act.shape[2:])).flatten(1).mean(1)  # (B,)
        x.grad = None
        (-value.sum()).backward()
        return x.grad
    return step


def floor_times(model: torch.nn.Module, layer: str, batch: int, size: int, steps: int,
                channels_last=None) -> List[float]:
    """Seconds of each of ``steps`` floor steps (after one untimed warm-up step)."""
    step = floor_step(model, layer, batch, size, channels_last=channels_last)
    step()
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="mixed4a")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224, help="model input size in pixels")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--weights", default=None, help="a state dict for InceptionV1 (default: random weights, seed 0)")
    ap.add_argument("--memory-format", choices=["auto", "channels-last", "contiguous"], default="auto",
                    help="auto: what featvis uses on the device")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = featvis.load_model("inceptionv1", weights=args.weights, device=args.device)
    cl = {"auto": None, "channels-last": True, "contiguous": False}[args.memory_format]
    times = floor_times(model, args.layer, args.batch, args.size, args.steps, channels_last=cl)
    print(f"floor {args.layer} batch {args.batch} at {args.size} px ({args.memory_format}): median "
          f"{statistics.median(times):.4f} s/step over {len(times)} steps (min {min(times):.4f}, "
          f"max {max(times):.4f}), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
