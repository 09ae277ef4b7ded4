"""How many CPU threads torch uses: ``--threads N``, ``FEATVIS_THREADS``, and a default that does
not collapse on a busy machine (:func:`choose`, :func:`apply`).

Why featvis decides this instead of leaving torch's default (one OpenMP thread per logical CPU):
on a machine that other processes also use, OpenMP threads that spin at every barrier wait for a
thread the scheduler has taken off its core, and each small op of a render pays for it. Measured on
2 shared cores (``benchmarks/threads.py``, README "Speed"): a MobileNetV2 render step beside a busy
process took several times longer with 2 threads than with 1. So the default counts the *idle*
physical cores (cores this process may run on, less the load average of the others), and the
command line sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at barriers instead of spinning)
before torch starts, unless the user set it.

On the CPU the thread count changes pixels: oneDNN splits some convolutions' sums differently for
different thread counts (measured: MobileNetV2's block outputs from ``features.4`` on, at 152 px,
differ in the 5th digit between 1 and 2 threads), and a render amplifies that over its steps. A render job therefore records the count it
used as a setting (``threads``), a resumed job takes the folder's count, and an explicit other count
is refused like any other setting (:mod:`featvis.jobs.job`). On CUDA the count changes no pixel and
is not a setting.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from .errors import UsageError

#: Environment variable: the thread count for every featvis command (a number, or ``auto``).
ENV = "FEATVIS_THREADS"
#: The most threads anyone sensibly asks for; beyond it is a typo.
MAX_THREADS = 1024


def parse(text, source: str = "--threads") -> Optional[int]:
    """``"4"`` -> 4, ``"auto"``/``""``/``None`` -> ``None`` (featvis chooses); anything else is a
    :class:`~featvis.errors.UsageError` naming ``source``."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        text = str(text).strip()
        if text in ("", "auto"):
            return None
        try:
            value = int(text)
        except ValueError:
            value = 0
    if not 1 <= value <= MAX_THREADS:
        raise UsageError(f"{source} {text}: expected a number of CPU threads from 1 to {MAX_THREADS}, or auto "
                         "(1 is fastest on a machine that other jobs also use)")
    return value


def arg(text: str) -> Optional[int]:
    """argparse ``type=`` for ``--threads N|auto`` (its message becomes argparse's one line)."""
    import argparse
    try:
        return parse(text, "")
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


def available_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask: a SLURM or cgroup cpuset counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (SMT siblings counted once): OpenMP
    threads on two siblings of one core compete for its units, so more threads than cores gain
    nothing for convolutions. Falls back to the logical count where the topology is not readable."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as f:
                package = f.read().strip()
            with open(base + "core_id") as f:
                core = f.read().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def machine_load() -> Optional[float]:
    """The 1-minute load average (runnable processes, all CPUs), or ``None`` where there is none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def auto(load_aware: bool = True) -> int:
    """The default count: physical cores, less what the load average says other processes use
    (at least 1). ``load_aware=False`` (shards of one job: every shard must choose the same count,
    whatever the load when it started) counts the cores only."""
    cores = physical_cores()
    load = machine_load() if load_aware else None
    if load is None:
        return cores
    idle = available_cpus() - load
    return max(1, min(cores, int(idle + 0.5)))


def choose(explicit: Optional[int] = None, recorded: Optional[int] = None,
           load_aware: bool = True) -> Tuple[int, str]:
    """``(threads, where it came from)``, first of: ``explicit`` (``--threads``), ``$FEATVIS_THREADS``,
    ``recorded`` (the count a render folder was made with: resuming keeps the bytes),
    ``$OMP_NUM_THREADS`` (set by the user, or by torchrun for several processes), :func:`auto`."""
    if explicit is not None:
        return parse(explicit), "--threads"
    env = parse(os.environ.get(ENV), f"{ENV}=")
    if env is not None:
        return env, ENV
    if recorded is not None:
        return int(recorded), "the folder's"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), "OMP_NUM_THREADS"
    return auto(load_aware), "auto"


def explicit_choice(explicit: Optional[int] = None) -> Optional[int]:
    """The count the user chose (``--threads``, else ``$FEATVIS_THREADS``), or ``None``."""
    if explicit is not None:
        return parse(explicit)
    return parse(os.environ.get(ENV), f"{ENV}=")


def apply(threads: int) -> int:
    """``torch.set_num_threads(threads)`` (intra-op: OpenMP and MKL); returns ``threads``."""
    import torch
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def passive_wait() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: idle OpenMP threads sleep instead of spinning. Read
    once when OpenMP starts (when torch is imported), so the command line calls this first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
