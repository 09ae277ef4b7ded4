"""The one GPU check: the test suite on CUDA, then featvis against the floor, in one call (<= 8 min).

1. ``pytest --device cuda`` (a subprocess with a timeout; examples deselected);
2. ms per step, InceptionV1 (random weights) mixed4a at 128 px, batch 1/16/64/256/all (508):
   the floor (``benchmarks/floor.py``: forward to the layer + backward to the input, eager) and
   featvis fp32 / bf16, eager / CUDA graph (``render(graph=True)``), deterministic on and off;
   peak memory of each; whether two renders with one seed give the same bytes (eager and graph);
3. the whole-layer job's wall time, command to exit:
   ``featvis render inceptionv1 mixed4a --channels all --steps 512 --batch auto --weights none``
   (with and without ``--graph``).

A step's time is ``(t(2n steps) - t(n steps)) / n`` for one render call each, so set-up, capture
and the final evaluation cancel out; CUDA is synchronized by the render's own read-back.

On the device machine (torch 2.11 and Python 3.12 there, without kornia: carry kornia 0.9.0 and
kornia_rs 0.2.0, the versions this was written against, as wheels in an ignored ``.whl/``)::

    # here, once, in the repository root:
    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl kornia==0.9.0 kornia_rs==0.2.0
    # the device run (carry [".whl"], timeout_s 560), one command:
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && \
      export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_check.py 2>&1 | tee $OUT/gpu_check.txt

On a CPU, ``--quick`` runs every code path at toy sizes (a few tests, batches 1 and 2 at 32 px,
3 steps, 4 channels of the job, 2 steps) in about a minute.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import featvis  # noqa: E402
from featvis.objectives import channel  # noqa: E402
from featvis.param import fourier  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from floor import floor_step  # noqa: E402


def _run(cmd, timeout: int):
    """``cmd`` run from the repository root with this checkout first on the path: (the completed
    process, or the TimeoutExpired error; wall seconds)."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t = time.perf_counter()
    try:
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        result = e
    return result, time.perf_counter() - t


def run_tests(device: str, quick: bool, timeout: int) -> str:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not examples", "-p", "no:cacheprovider", "--device", device]
    if quick:
        cmd += ["tests/test_gpu_paths.py", "tests/test_render.py"]
    out, seconds = _run(cmd, timeout)
    if isinstance(out, subprocess.TimeoutExpired):
        print((out.stdout or b"")[-3000:].decode() if isinstance(out.stdout, bytes) else (out.stdout or "")[-3000:])
        return f"TIMEOUT after {timeout} s"
    tail = (out.stdout + out.stderr).strip().splitlines()
    print("\n".join(tail[-25:]))
    return f"rc={out.returncode}, {tail[-1] if tail else ''} ({seconds:.0f} s)"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_ms(model, layer, batch, size, n, device) -> float:
    step = floor_step(model, layer, batch, size)
    step()
    times = []
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(n):
            step()
        sync(device)
        times.append((time.perf_counter() - t) / n)
    return 1000 * statistics.median(times)


def render_once(model, layer, batch, size, steps, device, **kw):
    obj = channel(layer, list(range(batch)))
    return featvis.render(model, obj, param=fourier(size, batch=batch), steps=steps, seed=0, device=device,
                          progress=False, **kw)


def featvis_ms(model, layer, batch, size, n, device, **kw):
    """(ms per step, peak GiB, images of the n-step render)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    first = render_once(model, layer, batch, size, n, device, **kw)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    render_once(model, layer, batch, size, 2 * n, device, **kw)
    t2 = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return 1000 * max(t2 - t1, 1e-9) / n, peak, first.images


def job_seconds(device: str, quick: bool, extra, timeout: int) -> str:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "featvis", "render", "inceptionv1", "mixed4a", "--channels",
               "0:4" if quick else "all", "--steps", "2" if quick else "512", "--batch", "auto",
               "--weights", "none", "--device", device, "--out", out, *extra]
        if quick:
            cmd += ["--size", "32"]
        r, wall = _run(cmd, timeout)
        if isinstance(r, subprocess.TimeoutExpired):
            return f"TIMEOUT after {timeout} s"
        pngs = len(list(Path(out).glob("mixed4a/*.png")))
        status = "ok" if r.returncode == 0 else f"rc={r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:200]}"
        return f"{wall:.1f} s wall, {pngs} PNGs, {status}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="toy sizes, to check the code paths on a CPU")
    ap.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time compile=True at batch 64 (~1 min of compiling)")
    args = ap.parse_args(argv)
    device = featvis.models.pick_device(args.device)
    quick = args.quick
    started = time.perf_counter()
    print(f"featvis gpu_check on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}")

    tests = "skipped" if args.skip_tests else run_tests(device.type, quick, 120 if quick else 210)
    print(f"\n## tests with --device {device.type}: {tests}\n")

    layer, size = "mixed4a", 32 if quick else 128
    n = 3 if quick else 10
    torch.manual_seed(0)
    model = featvis.load_model("inceptionv1", weights=None, device=device)
    channels = featvis.activations(model, torch.zeros(1, 3, size, size, device=device), [layer])[layer].shape[1]
    batches = [1, 2] if quick else [1, 16, 64, 256, channels]
    configs = [("fp32", dict()), ("bf16", dict(precision="bf16")), ("fp32 graph", dict(graph=True)),
               ("bf16 graph", dict(precision="bf16", graph=True)), ("fp32 nondet", dict(deterministic=False)),
               ("fp32 graph nondet", dict(graph=True, deterministic=False))]
    print(f"## ms/step, {layer} at {size} px, random InceptionV1 ({device.type}); [peak GiB]\n")
    print("| batch | floor | " + " | ".join(c for c, _ in configs) + " | same bytes (det, det graph) |")
    print("|---" * (len(configs) + 3) + "|")
    for batch in batches:
        row = [str(batch), f"{floor_ms(model, layer, batch, size, n, device):.2f}"]
        images = {}
        for name, kw in configs:
            try:
                ms, peak, images[name] = featvis_ms(model, layer, batch, size, n, device, **kw)
                row.append(f"{ms:.2f} [{peak:.1f}]")
            except Exception as e:  # noqa: BLE001 -- a failed configuration is a table entry
                row.append(f"FAIL {type(e).__name__}: {str(e)[:60]}")
        same = []
        for name, kw in (("fp32", {}), ("fp32 graph", {"graph": True})):
            try:
                again = render_once(model, layer, batch, size, n, device, **kw).images
                same.append(str(name in images and torch.equal(again, images[name])))
            except Exception as e:  # noqa: BLE001
                same.append(f"FAIL {type(e).__name__}")
        row.append(", ".join(same))
        print("| " + " | ".join(row) + " |", flush=True)
    if args.compile:
        ms, peak, _ = featvis_ms(model, layer, min(64, channels), size, n, device, compile=True)
        print(f"\ncompile=True, batch {min(64, channels)}: {ms:.2f} ms/step [{peak:.1f} GiB]")

    budget = 300 if quick else max(60, int(470 - (time.perf_counter() - started)))
    print("\n## whole-layer job (featvis render inceptionv1 mixed4a --channels all --steps 512 --batch auto --weights none)")
    print(f"default (deterministic, eager): {job_seconds(device.type, quick, [], budget // 2)}")
    print(f"--graph: {job_seconds(device.type, quick, ['--graph'], budget // 2)}")
    print(f"\ngpu_check took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
