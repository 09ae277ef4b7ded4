"""Which shard of a job this process is: from ``--shard I/N``, or from the launcher's environment.

A whole-model job is a fixed, ordered list of batches (see :mod:`featvis.units`); shard ``i`` of
``N`` renders batches ``i, i+N, i+2N, ...``. Nothing else differs between shards: each image's seed
derives from the run seed and the unit, so the files do not depend on ``N``. No process group is
created or needed; the launchers below only tell each process its number.

Where the number comes from, first match wins:

========================  ==============================================================
``--shard I/N``           by hand (0-based: ``0/4`` ... ``3/4``)
torchrun                  ``RANK`` of ``WORLD_SIZE``; ``LOCAL_RANK`` picks ``cuda:LOCAL_RANK``
SLURM job array           ``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``
SLURM ``srun``            ``SLURM_PROCID`` of ``SLURM_NTASKS`` (``SLURM_LOCALID`` picks the GPU)
Kubernetes Indexed Job    ``JOB_COMPLETION_INDEX`` of ``--shards N`` (or ``FEATVIS_SHARDS``)
otherwise                 ``0/1``: the whole job
========================  ==============================================================
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, TypeVar

from ..errors import UsageError

T = TypeVar("T")

#: The environment variable that gives the shard count where the launcher does not (Kubernetes).
SHARDS_ENV = "FEATVIS_SHARDS"

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based). ``source`` says where the numbers came from;
    ``local_rank`` is the process's GPU on its node, when the launcher gives one."""

    index: int = 0
    count: int = 1
    source: str = "single process"
    local_rank: Optional[int] = None

    def __post_init__(self):
        assert self.count >= 1 and 0 <= self.index < self.count, (self.index, self.count)

    @property
    def writer(self) -> str:
        """This shard's writer id in the render folder (its part ``parts/<writer>.json``):
        ``shard-0-of-4``; a job of one shard is the folder's plain writer, ``main``."""
        return "main" if self.count == 1 else f"shard-{self.index}-of-{self.count}"

    def owns(self, batch_index: int) -> bool:
        """Whether batch number ``batch_index`` of the job's ordered batch list is this shard's."""
        return batch_index % self.count == self.index

    def take(self, batches: Sequence[T]) -> list:
        """This shard's batches: every ``count``-th, starting at ``index``."""
        return list(batches[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str, option: str = "--shard") -> Shard:
    """``"I/N"`` as a :class:`Shard`; a :class:`UsageError` naming the fix otherwise."""
    m = _SHARD.match(str(text))
    if not m:
        raise UsageError(f"{option} {text}: expected I/N, shard I (from 0) of N, e.g. {option} 0/4")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise UsageError(f"{option} {text}: the number of shards must be at least 1, e.g. {option} 0/4")
    if index >= count:
        raise UsageError(f"{option} {text}: shards are numbered from 0, so shard {index} of {count} does not exist; "
                         f"use 0/{count} ... {count - 1}/{count}")
    return Shard(index, count, option)


def _int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not a whole number; "
                         f"unset it or pass --shard I/N by hand") from None


def _checked(index: int, count: int, source: str, names: str, local_rank=None) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"{names} give shard {index} of {count}, which does not exist; "
                         f"fix the launcher's settings or pass --shard I/N by hand")
    return Shard(index, count, source, local_rank)


def detect(flag: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
           count: Optional[int] = None) -> Shard:
    """This process's shard: ``flag`` (``--shard I/N``) if given, else the launcher's environment
    (see the module docstring), else ``0/1``. ``count`` (``--shards N``) is the count for launchers
    that do not give one (a Kubernetes Indexed Job's ``completions``)."""
    env = os.environ if env is None else env
    if flag is not None:
        return parse(flag)
    if count is None and env.get(SHARDS_ENV):
        count = _int(env, SHARDS_ENV)
    if count is not None and count < 1:
        raise UsageError(f"--shards {count}: the number of shards must be at least 1")
    local = _int(env, "LOCAL_RANK") if env.get("LOCAL_RANK") else None
    if env.get("RANK") and env.get("WORLD_SIZE"):  # torchrun / torch.distributed.launch
        return _checked(_int(env, "RANK"), _int(env, "WORLD_SIZE"), "torchrun", "RANK and WORLD_SIZE", local)
    if env.get("SLURM_ARRAY_TASK_ID"):
        if not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise UsageError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (SLURM before 19.05?); "
                             "pass --shard $SLURM_ARRAY_TASK_ID/N by hand")
        step = _int(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
        if step != 1:
            raise UsageError(f"SLURM_ARRAY_TASK_STEP={step}: shard numbers need a step-1 array such as "
                             "--array=0-15 (a limit like %4 is fine); or pass --shard I/N by hand")
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if env.get("SLURM_ARRAY_TASK_MIN") else 0
        return _checked(_int(env, "SLURM_ARRAY_TASK_ID") - first, _int(env, "SLURM_ARRAY_TASK_COUNT"),
                        "SLURM array", "SLURM_ARRAY_TASK_ID, _MIN and _COUNT")
    if env.get("SLURM_PROCID") and env.get("SLURM_NTASKS") and int(env.get("SLURM_NTASKS", "1")) > 1:
        slurm_local = _int(env, "SLURM_LOCALID") if env.get("SLURM_LOCALID") else None
        return _checked(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), "srun", "SLURM_PROCID and SLURM_NTASKS",
                        local if local is not None else slurm_local)
    if env.get("JOB_COMPLETION_INDEX"):
        if count is None:
            raise UsageError(f"JOB_COMPLETION_INDEX={env['JOB_COMPLETION_INDEX']} (a Kubernetes Indexed Job) gives this "
                             f"shard's number but not how many there are; pass --shards N (the Job's completions) "
                             f"or set {SHARDS_ENV}=N")
        return _checked(_int(env, "JOB_COMPLETION_INDEX"), count, "Kubernetes Indexed Job",
                        f"JOB_COMPLETION_INDEX and --shards/{SHARDS_ENV}")
    if count is not None and count != 1:
        raise UsageError(f"--shards {count} names how many shards there are, but nothing says which one this "
                         "process is; pass --shard I/N, or launch it with torchrun, SLURM or a Kubernetes Indexed Job")
    return Shard(0, 1, "single process", local)


def device_for(shard: Shard, device: str = "auto", cuda_available: Optional[bool] = None) -> str:
    """``--device`` for this shard: ``cuda:LOCAL_RANK`` where the launcher gave a local rank and
    ``device`` is ``auto`` or ``cuda`` with CUDA present (one GPU per process); ``device`` otherwise."""
    if shard.local_rank is None or device not in ("auto", "cuda"):
        return device
    if cuda_available is None:
        import torch
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return device
    return f"cuda:{shard.local_rank}"
