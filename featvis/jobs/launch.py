"""``featvis render ... --slurm K=V,...``: submit a whole-model job as a SLURM job array with submitit.

Each array task runs ``featvis render`` with the same arguments and ``--shard I/N``; nothing else
is shared between them but the output folder (see :mod:`featvis.jobs.job`). submitit is an optional
dependency (``pip install featvis[slurm]``); ``cluster=local`` runs the array as local processes
(what the tests use), ``cluster=debug`` in this process.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

from ..errors import UsageError

#: ``--slurm`` keys and the submitit parameters they set.
KEYS = {
    "partition": "slurm_partition", "gpus": "gpus_per_node", "time": "timeout_min", "cpus": "cpus_per_task",
    "mem": "mem_gb", "account": "slurm_account", "qos": "slurm_qos", "constraint": "slurm_constraint",
    "parallelism": "slurm_array_parallelism",
}
#: Keys read by featvis itself: the array size, the submitit cluster, and whether to wait.
OWN = ("array", "cluster", "wait")
_INTS = ("gpus", "time", "cpus", "mem", "parallelism", "array")


def parse_options(text: str) -> Dict[str, object]:
    """``"partition=gpu,gpus=1,array=16"`` as a dict (numbers as ints); :class:`UsageError` for a bad item."""
    opts: Dict[str, object] = {}
    for item in filter(None, (i.strip() for i in str(text).split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value.strip():
            raise UsageError(f"--slurm {text}: {item!r} is not KEY=VALUE; e.g. --slurm partition=gpu,gpus=1,array=16")
        if key not in KEYS and key not in OWN:
            raise UsageError(f"--slurm {text}: unknown key {key!r}; use {', '.join(list(KEYS) + list(OWN))}")
        value = value.strip()
        if key in _INTS:
            try:
                value = int(value)
            except ValueError:
                raise UsageError(f"--slurm {text}: {key}={value} is not a whole number") from None
            if value < (0 if key == "gpus" else 1):
                raise UsageError(f"--slurm {text}: {key}={value} must be at least {0 if key == 'gpus' else 1}")
        opts[key] = value
    if "array" not in opts:
        raise UsageError(f"--slurm {text}: say how many shards with array=N, e.g. --slurm partition=gpu,gpus=1,array=16")
    if "wait" in opts:
        opts["wait"] = str(opts["wait"]).lower() in ("1", "true", "yes")
    return opts


def shard_argv(argv: List[str], index: int, count: int) -> List[str]:
    """The render command line of array task ``index``: without ``--slurm``, with ``--shard index/count``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--slurm":
            skip = True
            continue
        if a.startswith("--slurm="):
            continue
        out.append(a)
    return out + ["--shard", f"{index}/{count}"]


def task(argv: List[str]):
    """One array task: the ``featvis`` command with ``argv``, as a process of its own (its output in
    the task's log; a non-zero status fails the task, which SLURM and submitit show)."""
    from submitit.helpers import CommandFunction
    return CommandFunction([sys.executable, "-m", "featvis", *argv], verbose=True)


def submit_array(args, argv: List[str]) -> int:
    """Check the job here, submit ``array`` tasks, print their ids; with ``wait`` (the default for
    ``cluster=local``) wait for them and merge."""
    opts = parse_options(args.slurm)
    if args.shard is not None or args.shards is not None:
        raise UsageError("--slurm submits every shard itself; drop --shard/--shards")
    try:
        import submitit
    except ImportError:
        raise UsageError("--slurm needs submitit: pip install 'featvis[slurm]' (or pip install submitit), "
                         "or launch the shards yourself (examples/slurm_array.sh)") from None
    from .job import cli_preset, merge, prepare_job
    from .shard import Shard
    n = int(opts["array"])
    # Every error a task would meet, here and now (on the CPU: the login node may have no GPU).
    prepare_job(args.model, list(args.layer), args.channels, args.out, weights=args.weights, layer_set=args.layers,
                neurons=args.neurons, size=args.size, steps=args.steps, lr=args.lr, param=args.param,
                preset=cli_preset(args.preset, args.param), diversity=args.diversity, diversity_weight=args.diversity_weight, seed=args.seed, device="cpu", batch=8 if args.batch == "auto" else args.batch,
                format=args.format, force=args.force, shard=Shard(0, n))
    if args.batch == "auto":
        raise UsageError("--batch auto with --slurm: every shard must cut the job into the same batches; give --batch N "
                         "(featvis plan suggests one)")
    cluster = opts.get("cluster")
    wait = bool(opts.get("wait", cluster in ("local", "debug")))
    logs = Path(args.out) / "slurm"
    executor = submitit.AutoExecutor(folder=str(logs / "%j"), cluster=cluster)
    params = {KEYS[k]: v for k, v in opts.items() if k in KEYS}
    executor.update_parameters(name="featvis", nodes=1, tasks_per_node=1, **params)
    argvs = [shard_argv(argv, i, n) for i in range(n)]
    with executor.batch():
        jobs = [executor.submit(task(a)) for a in argvs]
    print(f"submitted {n} shards as {jobs[0].job_id.split('_')[0]} ({executor.cluster}); logs: {logs}/", file=sys.stderr)
    if not wait:
        print(f"when they are done: featvis merge {args.out}")
        return 0
    failed = []
    for i, job in enumerate(jobs):
        try:
            job.result()
        except Exception as e:  # submitit's FailedJobError: the task's own message is in its log
            failed.append(f"shard {i}/{n} ({str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__})")
    report = merge(args.out)
    for line in report.lines():
        print(line)
    if failed:
        print(f"{len(failed)} shards failed: {'; '.join(failed)}; logs in {logs}/; re-run the same command to finish them",
              file=sys.stderr)
        return 1
    return 0 if report.complete else 3
