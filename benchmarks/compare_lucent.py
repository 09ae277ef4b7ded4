"""Time featvis against Lucent 0.1.8 and against the floor, on the same random-weight models.

Lucent is never a featvis dependency: give it its own virtual environment that sees the system's
torch (Lucent 0.1.8 needs kornia 0.4.1, featvis a recent kornia, so they cannot share one):

    python3 -m venv --system-site-packages ~/lucent-venv
    ~/lucent-venv/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1
    ~/lucent-venv/bin/pip install ipython        # lucent imports IPython.display, if not present

Then, from the repository root (featvis itself runs in this Python):

    python3 benchmarks/compare_lucent.py --lucent-python ~/lucent-venv/bin/python [--quick]

What it measures (seconds per optimization step, the median over the steps of a render after the
first, then the median over ``--repeats`` runs taken in turn: featvis, Lucent, floor, featvis, ...):

- InceptionV1 (one random state dict, loaded strictly by both), one channel of mixed3a, mixed4a and
  mixed5b (batch 1), and 16 channels as one batch (batch 16; Lucent for mixed4a only), all with the
  model fed 224 x 224 px: featvis renders a 212 px Fourier image (its standard transforms pad 12 and
  crop 8 + 4: 212 -> 224); Lucent renders the same 212 px image with ``fixed_image_size=224``, its
  last transform resizing whatever its transforms made to 224. Both use their default optimizer
  (Adam, lr 0.05) and standard transforms. featvis's redirected-ReLU steps (the first 16 of a render,
  ``redirect_steps``) are switched off for timing, so the figure is the steady state of 496 of 512
  steps; Lucent redirects ReLU gradients on every step, as it always does.
- The floor (benchmarks/floor.py): forward + backward of the same InceptionV1 cut after the layer,
  with respect to a fixed input only, in featvis's memory format for the device.
- A small model where Lucent is all overhead: a CIFAR-size ResNet-20 (random weights) with the
  model fed 32 px (a 20 px image for both, Lucent with ``fixed_image_size=32``), ten channels of
  ``layer3``: one featvis render with a batch of 10 against ten Lucent renders one by one, each the
  same number of steps; wall time of the whole job divided by the steps.
- With ``--compile``, featvis with ``render(compile=True)`` too ("compiled"; its compilation, once
  per layer and batch, falls in the untimed first step).
- Peak memory (the child process's peak resident set size, ``ru_maxrss``) of a 3-step render of 16
  mixed4a channels at 224 px, each tool in a fresh process; also the peak minus the resident set
  after imports and model building.

Other processes on the same cores distort every figure (each tool's two OpenMP threads wait on
each other), so each run also measures how many cores the rest of the machine kept busy meanwhile
(from /proc) and is taken again, after a pause, when that exceeds ``--max-foreign`` (0.15 cores).
The figures, the other processes' share and the load average are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from models import resnet20  # noqa: E402

MODEL_SIZE = 224       # InceptionV1's input in pixels, for both tools
PARAM_SIZE = 212       # featvis's standard transforms: 212 + 2*12 - 8 - 4 = 224
SMALL_MODEL_SIZE = 32  # ResNet-20's CIFAR input
SMALL_PARAM_SIZE = 20  # 20 + 24 - 12 = 32
SMALL_LAYER, SMALL_UNITS = "layer3", 10
BIG_BATCH = 16
LAYERS = ("mixed3a", "mixed4a", "mixed5b")


# ---------------------------------------------------------------- workers (one per Python) ----
class StepClock:
    """Records the time of each call of the image function: one per optimization step."""

    def __init__(self):
        self.times: List[float] = []

    def tick(self):
        self.times.append(time.perf_counter())

    def step_times(self, first: int, last: int) -> List[float]:
        """Durations between the calls ``first``..``last`` (inclusive: the in-loop calls)."""
        t = self.times[first:last + 1]
        return [b - a for a, b in zip(t, t[1:])]


def featvis_worker(weights_dir: Path):
    sys.path.insert(0, str(ROOT))
    import featvis
    from featvis.objectives import channel
    from featvis.param import ImageParam, fourier
    from floor import floor_times

    inception = featvis.load_model("inceptionv1", weights=str(weights_dir / "inceptionv1.pt"), device="cpu")
    inception.redirect_steps = 0
    small = featvis.wrap(resnet20(), normalize="imagenet", name="resnet20")
    small.net.load_state_dict(torch.load(weights_dir / "resnet20.pt"))

    class Timed(ImageParam):
        """The param, with a clock: render() calls it once per step and once at the end."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.clock = inner, StepClock()
            self.batch, self.height, self.width = inner.batch, inner.height, inner.width

        def reset(self, rng):
            self.inner.reset(rng)

        def forward(self):
            self.clock.tick()
            return self.inner()

    def render_steps(layer, batch, steps, compile=False):
        param = Timed(fourier(PARAM_SIZE, batch=batch))
        featvis.render(inception, channel(layer, list(range(batch))), param=param, steps=steps,
                       seed=0, progress=False, compile=compile)
        return param.clock.step_times(0, steps - 1)[1:]  # the in-loop calls; the first step warms up

    def small_job(steps):
        t = time.perf_counter()
        featvis.render(small, channel(SMALL_LAYER, list(range(SMALL_UNITS))),
                       param=fourier(SMALL_PARAM_SIZE, batch=SMALL_UNITS), steps=steps, seed=0, progress=False)
        return [(time.perf_counter() - t) / steps]

    small_job(2)  # untimed: the process's first render pays one-off costs (kernel set-up, lazy imports)

    def handle(cmd):
        if cmd["what"] == "render":
            return render_steps(cmd["layer"], cmd["batch"], cmd["steps"], cmd.get("compile", False))
        if cmd["what"] == "floor":
            return floor_times(inception, cmd["layer"], cmd["batch"], MODEL_SIZE, cmd["steps"] - 1)
        if cmd["what"] == "small":
            return small_job(cmd["steps"])
        raise ValueError(cmd)
    serve(handle)


def lucent_worker(weights_dir: Path):
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1
    from lucent.optvis import objectives, param, render

    # As Lucent's README: the model in eval mode, its weights left as they are (requiring grad).
    inception = InceptionV1()
    inception.load_state_dict(torch.load(weights_dir / "inceptionv1.pt"))
    inception.eval()
    small = resnet20()
    small.load_state_dict(torch.load(weights_dir / "resnet20.pt"))
    small.eval()

    def run(model, objective, size, batch, steps, model_size):
        clock = StepClock()

        def param_f():
            params, image_f = param.image(size, batch=batch)

            def timed():
                clock.tick()
                return image_f()
            return params, timed
        render.render_vis(model, objective, param_f, thresholds=(steps,), progress=False,
                          show_image=False, fixed_image_size=model_size)
        return clock

    def handle(cmd):
        if cmd["what"] == "render":
            layer, batch, steps = cmd["layer"], cmd["batch"], cmd["steps"]
            objective = sum(objectives.channel(layer, i, batch=i) for i in range(batch)) if batch > 1 \
                else objectives.channel(layer, 0)
            clock = run(inception, objective, PARAM_SIZE, batch, steps, MODEL_SIZE)
            # Calls: one to read the shape, one per step, one for the image at the threshold.
            return clock.step_times(1, steps)[1:]
        if cmd["what"] == "small":
            return [small_job(cmd["steps"])]
        raise ValueError(cmd)

    def small_job(steps):
        t = time.perf_counter()
        for unit in range(SMALL_UNITS):
            run(small, objectives.channel(SMALL_LAYER, unit), SMALL_PARAM_SIZE, 1, steps, SMALL_MODEL_SIZE)
        return (time.perf_counter() - t) / steps

    run(small, objectives.channel(SMALL_LAYER, 0), SMALL_PARAM_SIZE, 1, 2, SMALL_MODEL_SIZE)  # untimed warm-up
    serve(handle)


def serve(handle):
    """Answer one JSON command per line on stdin with one JSON line on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing a library prints may break the protocol
    for line in sys.stdin:
        out.write(json.dumps(handle(json.loads(line))) + "\n")
        out.flush()


def memory_child(tool: str, weights_dir: Path):
    """Peak resident memory of one 3-step render of 16 mixed4a channels at 224 px (kB)."""
    channels, steps = list(range(BIG_BATCH)), 3
    if tool == "featvis":
        sys.path.insert(0, str(ROOT))
        import featvis
        from featvis.objectives import channel
        from featvis.param import fourier
        model = featvis.load_model("inceptionv1", weights=str(weights_dir / "inceptionv1.pt"), device="cpu")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        featvis.render(model, channel("mixed4a", channels), param=fourier(PARAM_SIZE, batch=BIG_BATCH),
                       steps=steps, seed=0, progress=False)
    else:
        from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1
        from lucent.optvis import objectives, param, render
        model = InceptionV1()
        model.load_state_dict(torch.load(weights_dir / "inceptionv1.pt"))
        model.eval()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        render.render_vis(model, sum(objectives.channel("mixed4a", c, batch=c) for c in channels),
                          lambda: param.image(PARAM_SIZE, batch=BIG_BATCH), thresholds=(steps,),
                          progress=False, show_image=False, fixed_image_size=MODEL_SIZE)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kb": peak, "before_kb": before}))


# ---------------------------------------------------------------- the parent ----
class Worker:
    def __init__(self, python: str, tool: str, weights_dir: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT) if tool == "featvis" else "")
        self.proc = subprocess.Popen([python, __file__, "--worker", tool, "--weights-dir", str(weights_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **cmd) -> List[float]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died on {cmd} (exit status {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def make_weights(weights_dir: Path):
    """One random state dict per model, written once and loaded by both tools."""
    sys.path.insert(0, str(ROOT))
    import featvis
    torch.manual_seed(0)
    inception = featvis.load_model("inceptionv1", weights=None, device="cpu")
    torch.save(inception.net.state_dict(), weights_dir / "inceptionv1.pt")
    torch.save(resnet20(seed=0).state_dict(), weights_dir / "resnet20.pt")


class CpuMeter:
    """How many cores *other* processes kept busy during a measurement (Linux: /proc), so that a
    run disturbed by the rest of the machine can be told apart and taken again."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.accepted: List[float] = []  # other processes' cores during each run that counts

    def _read(self):
        try:
            with open("/proc/stat") as f:
                cpu = [int(v) for v in f.readline().split()[1:]]
            own = 0
            for pid in self.pids:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                own += int(fields[11]) + int(fields[12])  # utime + stime, all threads
        except OSError:
            return None
        return sum(cpu) - cpu[3] - cpu[4], own, time.monotonic()  # busy (not idle, not iowait)

    def start(self):
        self._start = self._read()

    def foreign_cores(self):
        end = self._read()
        if end is None or self._start is None:
            return float("nan")
        busy, own, wall = (b - a for a, b in zip(self._start, end))
        return max(0.0, (busy - own) / self.tick / max(wall, 1e-9))


def measure(jobs, repeats, meter: CpuMeter, max_foreign: float, retries: int) -> Dict[str, List[float]]:
    """Run each (name, worker, command) in turn, ``repeats`` rounds; {name: per-round medians}.

    A run during which other processes kept more than ``max_foreign`` cores busy is taken again
    (after a pause), at most ``retries`` times; the last try counts whatever its load.
    """
    out: Dict[str, List[float]] = {}
    for r in range(repeats):
        for name, worker, cmd in jobs:
            for attempt in range(retries + 1):
                meter.start()
                value = statistics.median(worker.ask(**cmd))
                foreign = meter.foreign_cores()
                if not foreign > max_foreign:
                    break
                print(f"  ({name}: other processes used {foreign:.2f} cores; again in 10 s)", file=sys.stderr, flush=True)
                time.sleep(10)
            out.setdefault(name, []).append(value)
            meter.accepted.append(foreign)
            print(f"  round {r + 1}/{repeats} {name}: {value:.4f} s/step (others: {foreign:.2f} cores)",
                  file=sys.stderr, flush=True)
    return out


def fmt(xs: List[float]) -> str:
    return f"{statistics.median(xs):.4f} s  (runs: {', '.join(f'{x:.4f}' for x in xs)})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lucent-python", required=False, help="the Python of the Lucent virtual environment")
    ap.add_argument("--quick", action="store_true", help="few steps and runs (a few minutes on 2 cores)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5, --quick 3)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["batch1", "batch16", "small", "memory"])
    ap.add_argument("--compile", action="store_true",
                    help="also time featvis with render(compile=True) (each layer and batch compiles once, "
                         "about a minute, outside the timed steps)")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="take a run again when other processes kept more cores than this busy (default 0.15)")
    ap.add_argument("--retries", type=int, default=6, help="how often to take a disturbed run again (default 6)")
    ap.add_argument("--worker", choices=["featvis", "lucent"], help=argparse.SUPPRESS)
    ap.add_argument("--memory-child", choices=["featvis", "lucent"], help=argparse.SUPPRESS)
    ap.add_argument("--weights-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return (featvis_worker if args.worker == "featvis" else lucent_worker)(args.weights_dir)
    if args.memory_child:
        return memory_child(args.memory_child, args.weights_dir)
    if not args.lucent_python:
        ap.error("--lucent-python is required (see the setup at the top of this file)")

    repeats = args.repeats or (3 if args.quick else 5)
    steps1, steps16, steps_small = (6, 3, 16) if args.quick else (12, 5, 48)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        weights_dir = Path(tmp)
        make_weights(weights_dir)
        fv = Worker(sys.executable, "featvis", weights_dir)
        lu = Worker(args.lucent_python, "lucent", weights_dir)
        meter = CpuMeter([os.getpid(), fv.proc.pid, lu.proc.pid])
        timed = lambda jobs: measure(jobs, repeats, meter, args.max_foreign, args.retries)  # noqa: E731
        compiled = lambda cmd: [("compiled", fv, dict(cmd, compile=True))] if args.compile else []  # noqa: E731
        results = {}
        try:
            if "batch1" not in args.skip:
                for layer in LAYERS:
                    print(f"InceptionV1 {layer}, batch 1, model input {MODEL_SIZE} px ...", file=sys.stderr)
                    cmd = dict(what="render", layer=layer, batch=1, steps=steps1)
                    results[(layer, 1)] = timed([("featvis", fv, cmd), ("lucent", lu, cmd),
                                                 ("floor", fv, dict(cmd, what="floor"))] + compiled(cmd))
            if "batch16" not in args.skip:
                for layer in LAYERS:
                    print(f"InceptionV1 {layer}, batch {BIG_BATCH} ...", file=sys.stderr)
                    cmd = dict(what="render", layer=layer, batch=BIG_BATCH, steps=steps16)
                    jobs = [("featvis", fv, cmd), ("floor", fv, dict(cmd, what="floor"))] + compiled(cmd)
                    if layer == "mixed4a":
                        jobs.insert(1, ("lucent", lu, cmd))
                    results[(layer, BIG_BATCH)] = timed(jobs)
            if "small" not in args.skip:
                print(f"ResNet-20, {SMALL_UNITS} units ...", file=sys.stderr)
                cmd = dict(what="small", steps=steps_small)
                results["small"] = timed([("featvis", fv, cmd), ("lucent", lu, cmd)])
        finally:
            fv.close()
            lu.close()
        memory = {}
        if "memory" not in args.skip:
            for tool, python in (("featvis", sys.executable), ("lucent", args.lucent_python)):
                env = dict(os.environ, PYTHONPATH=str(ROOT) if tool == "featvis" else "")
                done = subprocess.run([python, __file__, "--memory-child", tool, "--weights-dir", str(weights_dir)],
                                      capture_output=True, text=True, env=env, check=True)
                memory[tool] = json.loads(done.stdout.strip().splitlines()[-1])
    report(results, memory, repeats, steps1, steps16, steps_small)
    if meter.accepted:
        print(f"Other processes during the runs counted: median {statistics.median(meter.accepted):.2f} cores, "
              f"max {max(meter.accepted):.2f} (runs above {args.max_foreign} were taken again, up to {args.retries} times)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report(results, memory, repeats, steps1, steps16, steps_small):
    med = statistics.median
    print(f"\nSeconds per step, median of {repeats} runs (each the median of a render's steps after the "
          f"first; batch 1: {steps1} steps, batch {BIG_BATCH}: {steps16}):")
    for (layer, batch), r in ((k, v) for k, v in results.items() if k != "small"):
        print(f"InceptionV1 {layer} batch {batch} @ {MODEL_SIZE} px")
        for name, xs in r.items():
            print(f"  {name:8s} {fmt(xs)}")
        f = med(r["featvis"])
        line = f"  featvis/floor = {f / med(r['floor']):.3f}"
        if "lucent" in r:
            line += f"   featvis/lucent = {f / med(r['lucent']):.3f} (featvis {med(r['lucent']) / f:.2f}x faster)"
        print(line)
        if "compiled" in r:
            c = med(r["compiled"])
            print(f"  compiled/floor = {c / med(r['floor']):.3f}   compiled/featvis = {c / f:.3f}"
                  + (f"   compiled/lucent = {c / med(r['lucent']):.3f}" if "lucent" in r else ""))
    if "small" in results:
        r = results["small"]
        f, lu = med(r["featvis"]), med(r["lucent"])
        print(f"ResNet-20 (CIFAR) @ {SMALL_MODEL_SIZE} px, {SMALL_UNITS} units of {SMALL_LAYER}, {steps_small} steps, "
              f"wall time of the whole job per step:")
        print(f"  featvis  {fmt(r['featvis'])}   (one render, batch {SMALL_UNITS})")
        print(f"  lucent   {fmt(r['lucent'])}   ({SMALL_UNITS} renders one by one)")
        print(f"  featvis/lucent = {f / lu:.3f} (featvis {lu / f:.2f}x faster)")
    if memory:
        print(f"Peak resident memory, 3-step render of {BIG_BATCH} mixed4a channels @ {MODEL_SIZE} px (fresh process each):")
        for tool, m in memory.items():
            print(f"  {tool:8s} peak {m['peak_kb'] / 1024:.0f} MiB; above the model-loaded process: "
                  f"{(m['peak_kb'] - m['before_kb']) / 1024:.0f} MiB")
        if len(memory) == 2:
            print(f"  featvis/lucent peak = {memory['featvis']['peak_kb'] / memory['lucent']['peak_kb']:.3f}")


if __name__ == "__main__":
    main()
