"""Scaling of a whole-model job over worker processes: 1 worker against N, the same job, side by side.

Each worker is a ``featvis render ... --shard I/N`` process with ``--threads`` torch threads (1 by
default: one core per worker, as one GPU per worker on a GPU node); the N workers start together
on an empty folder and the job is done when the last one exits (it merges the folder). Runs
alternate (1, N, 1, N, ...) on a fresh folder each time; the medians are reported, with

    speed-up = T(1) / T(N)          efficiency = speed-up / N

Wall time includes each process's start (importing torch, loading the model) and the final merge:
what a user waits for. The job renders random-weight ResNet-18 blocks (no download; the time per
step does not depend on the weights), 64 px, so that it runs in a minute on a laptop CPU.

    python3 benchmarks/scaling.py                       # 1 vs 2 workers on the CPU
    python3 benchmarks/scaling.py --workers 4 --repeats 5

On a GPU node, the job the issue names (all nine mixed layers of InceptionV1, 5,484 channels, 512
steps), one process per GPU, then the figure to record (channels per hour, from the runs):

    featvis plan inceptionv1 mixed3a mixed3b mixed4a mixed4b mixed4c mixed4d mixed4e mixed5a mixed5b \\
        --steps 512 --batch 64
    time torchrun --standalone --nproc-per-node 8 -m featvis render inceptionv1 \\
        mixed3a mixed3b mixed4a mixed4b mixed4c mixed4d mixed4e mixed5a mixed5b \\
        --steps 512 --batch 64 --out microscope-inceptionv1
    featvis merge microscope-inceptionv1
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["resnet18", "layer2.1", "layer3.1", "--weights", "none", "--channels", "0:8", "--size", "64",
       "--steps", "48", "--batch", "2", "--device", "cpu"]


def run_job(workers: int, threads: int, job) -> float:
    """Wall seconds for ``workers`` shard processes to render ``job`` into a fresh folder."""
    out = Path(tempfile.mkdtemp(prefix="featvis-scaling-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "featvis", "render", *job, "--out", str(out / "r"),
                                   *(["--shard", f"{i}/{workers}"] if workers > 1 else [])],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(workers)]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"a worker failed (status {p.returncode}):\n{err}")
        seconds = time.perf_counter() - t0
        done = subprocess.run([sys.executable, "-m", "featvis", "merge", str(out / "r"), "--no-sheets"], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the folder is incomplete after the run:\n{done.stdout}{done.stderr}")
        return seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="N, the workers compared with one (default: 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, alternating (default: 3)")
    p.add_argument("--steps", type=int, default=48, help="steps per image (default: 48)")
    args = p.parse_args(argv)
    job = list(JOB)
    job[job.index("--steps") + 1] = str(args.steps)
    one, many = [], []
    for r in range(args.repeats):
        one.append(run_job(1, args.threads, job))
        many.append(run_job(args.workers, args.threads, job))
        print(f"run {r + 1}: 1 worker {one[-1]:.1f} s, {args.workers} workers {many[-1]:.1f} s", flush=True)
    t1, tn = statistics.median(one), statistics.median(many)
    speedup = t1 / tn
    print(f"job: featvis render {' '.join(job)}  ({os.cpu_count()} CPUs, {args.threads} thread(s) per worker)")
    print(f"median wall time: 1 worker {t1:.1f} s, {args.workers} workers {tn:.1f} s")
    print(f"speed-up {speedup:.2f}x, efficiency {speedup / args.workers:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
