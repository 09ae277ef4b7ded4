"""Expanded weights of InceptionV1 (random weights) from mixed3a to all 480 channels of mixed3b.

Target (issue 13): under 10 s on 2 CPU cores. Times the batched computation (every downstream
channel in one backward pass, ``featvis.circuits.expanded_weights``) against one backward pass per
channel (``batch=1``, the way captum's optim-wip does it, on the same linearized copy; timed on
1 and ``--per-channel`` channels and extrapolated to 480, since all 480 take minutes), alternating
the two, and prints the medians and their ratio. Wall time includes the deep copy of the model.

    python benchmarks/circuits.py [--repeats 3] [--threads 2] [--device cpu] [--per-channel 24]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import featvis
from featvis.analysis.circuits import expanded_weights

CPU = []  # CPU seconds (all threads) of each timed batched run: less at the mercy of a shared machine


def timed(fn, cpu=None) -> float:
    t, c = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if cpu is not None:
        cpu.append(time.process_time() - c)
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: 3; the median is shown)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2, the CI machine's cores)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--per-channel", type=int, default=24, metavar="N",
                   help="time one backward per channel on 1 and N channels, extrapolated to 480 (default: 24; 0 skips it)")
    args = p.parse_args(argv)
    if args.per_channel == 1 or args.per_channel < 0:
        p.error("--per-channel needs 0 (skip) or at least 2 channels")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = featvis.load_model("inceptionv1", weights=None, device=args.device)

    def batched():
        W = expanded_weights(model, "mixed3a", "mixed3b", device=args.device)
        assert W.shape == (480, 256, 5, 5), W.shape

    def per_channel(n):
        return lambda: expanded_weights(model, "mixed3a", "mixed3b", channels=range(n), batch=1, device=args.device)

    def per_channel_480() -> float:
        # The set-up (deep copy, shape probe) once, plus 479 times the cost of one more channel.
        one, n = timed(per_channel(1)), timed(per_channel(args.per_channel))
        return one + 479 * (n - one) / (args.per_channel - 1)

    batched()  # warm-up: first-call set-up (allocator, oneDNN kernels) is not per-call cost
    runs = {"batched": [], "per channel": []}
    for _ in range(args.repeats):
        runs["batched"].append(timed(batched, CPU))
        if args.per_channel:
            runs["per channel"].append(per_channel_480())
    print(f"InceptionV1 mixed3a -> mixed3b, 480 x 256 x 5 x 5 expanded weights, {args.device}, "
          f"{args.threads} threads, median of {args.repeats}:")
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    for k, v in med.items():
        print(f"  {k:<12s} {v:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in runs[k])})")
    print(f"  batched CPU time {statistics.median(CPU):.2f} s (all threads; wall above includes waiting for a busy machine)")
    if "per channel" in med:
        print(f"  batched is {med['per channel'] / med['batched']:.1f}x faster than one backward per channel")
    print(f"  target: under 10 s -> {'met' if med['batched'] < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
