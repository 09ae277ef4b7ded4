"""Start-up time of ``import featvis``, ``featvis --help`` and ``featvis models``, each in a fresh
process (median of N runs, alternating, so that a noisy machine hits all of them alike), next to
``import torch`` for scale. The goal (issue 16): the two commands under 1.5 s on 2 cores.

    python3 benchmarks/startup.py [--runs 7]
"""
import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": "pass",
    "import featvis": "import featvis",
    "featvis --help": "import sys; from featvis.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "featvis models": "from featvis.cli import main; main(['models'])",
    "import torch": "import torch",
}


def once(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    times = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            times[name].append(once(code))
    torch_s = statistics.median(times["import torch"])
    print(f"median of {args.runs} fresh processes each (seconds)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<16} {med:6.3f}   {med / torch_s:5.2f} x import torch   (min {min(ts):.3f}, max {max(ts):.3f})")


if __name__ == "__main__":
    main()
