"""CPU threads on a shared machine: a render alone and beside a second busy process, with torch's
default threads (featvis before ``featvis.threads``), 1 thread, and featvis's default now.

    nice -n 10 python3 benchmarks/threads.py [--repeats 2] [--steps 6] [--size 96] [--channels 4]

Each variant runs in a fresh worker process (thread settings must be made before torch starts),
which loads the model, renders 2 warm-up steps, then ``--steps`` timed steps of ``--channels``
channels of ``net.features.12`` of the ImageNet MobileNetV2 of ``../shared/models`` (ResNet-18 with
random weights where that folder is missing) at ``--size`` px, and reports seconds per step. The
busy process is a second worker rendering the same job in a loop with torch's default threads
(a colleague's job). Variants alternate within each repeat; medians are printed. The thread
variables of this shell (``OMP_NUM_THREADS``, ``FEATVIS_THREADS``, ``OMP_WAIT_POLICY``) are
removed from the workers' environment, so that each variant is what its name says.

Variants:
  before   torch's default: one thread per CPU, OpenMP's default waiting (spin, then sleep)
  1        torch.set_num_threads(1)
  passive  one thread per CPU, OMP_WAIT_POLICY=PASSIVE
  after    what the featvis command line does now: featvis.threads.passive_wait(), then
           apply(choose()): the idle physical cores (load-aware)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = [ROOT.parent / "shared" / "models", Path("/work/shared/models")]
VARIANTS = ("before", "1", "passive", "after")


def worker(variant: str, size: int, steps: int, channels: int, loop: bool) -> None:
    """One measurement (or, with ``loop``, the busy process: render until killed)."""
    if variant == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if variant == "after":
        from featvis.threads import passive_wait
        passive_wait()
    import torch

    import featvis
    from featvis.objectives import channel
    from featvis.threads import apply, choose
    if variant == "1":
        torch.set_num_threads(1)
    threads_note = ""
    if variant == "after":
        n, source = choose()
        apply(n)
        threads_note = source
    shared = next((p for p in SHARED if (p / "imagenet_models.py").is_file()), None)
    if shared is not None:
        sys.path.insert(0, str(shared))
        import imagenet_models as im
        model, layer, name = featvis.wrap(im.mobilenet_v2(), normalize=None), "net.features.12", "mobilenet_v2"
    else:
        model, layer, name = featvis.load_model("resnet18", weights=None, device="cpu"), "layer3", "resnet18 (random)"
    times = []

    def tick(n=1):
        times.append(time.perf_counter())

    while True:
        times.clear()
        featvis.render(model, channel(layer, list(range(channels))), param=featvis.param.fourier(size, batch=channels),
                       steps=steps + 2, seed=0, device="cpu", progress=tick)
        if not loop:
            break
    per_step = [b - a for a, b in zip(times[1:], times[2:])]  # after 2 warm-up steps
    print(json.dumps({"variant": variant, "threads": torch.get_num_threads(), "source": threads_note,
                      "model": name, "s_per_step": statistics.median(per_step)}))


def run_worker(variant: str, args, loop: bool = False):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "FEATVIS_THREADS",
                                                              "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, __file__, "--worker", variant, "--size", str(args.size), "--steps", str(args.steps),
           "--channels", str(args.channels)] + (["--loop"] if loop else [])
    if loop:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {variant} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--conditions", default="alone,busy")
    p.add_argument("--timeout", type=int, default=900, help="seconds per worker before it counts as failed")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.size, args.steps, args.channels, args.loop)
        return
    variants = args.variants.split(",")
    import signal

    def stop(signum, frame):  # timeout's SIGTERM: leave through the finally below, which reaps the busy worker
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    results = {}
    print(f"{os.cpu_count()} CPUs; {args.channels} channels, {args.size} px, {args.steps} timed steps; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    for condition in args.conditions.split(","):
        busy = run_worker("before", args, loop=True) if condition == "busy" else None
        try:
            if busy is not None:
                time.sleep(5)  # let it start working
            for r in range(args.repeats):
                for v in variants:
                    load = os.getloadavg()[0]
                    res = run_worker(v, args)
                    results.setdefault((condition, v), []).append(res)
                    print(f"  {condition:5s} {v:8s} {res['threads']} thread(s) {res['source']:>16s}: "
                          f"{res['s_per_step']:.3f} s/step (load {load:.1f}, {res['model']})", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print("\nmedian s/step:")
    print("| condition | " + " | ".join(variants) + " | before / after |")
    print("|---|" + "---|" * (len(variants) + 1))
    for condition in args.conditions.split(","):
        if not all((condition, v) in results for v in variants):
            continue
        med = {v: statistics.median(r["s_per_step"] for r in results[(condition, v)]) for v in variants}
        ratio = f"{med['before'] / med['after']:.1f}x" if "before" in med and "after" in med else "-"
        print(f"| {condition} | " + " | ".join(f"{med[v]:.3f}" for v in variants) + f" | {ratio} |")


if __name__ == "__main__":
    main()
