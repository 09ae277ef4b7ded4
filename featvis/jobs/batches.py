"""The work of a render job: units ``(layer, channel, k)`` in a fixed order, cut into batches.

The list depends only on the layers, channels, batch size and diversity, never on how the job is
sharded: shard ``i`` of ``N`` takes batches ``i, i+N, ...`` (:mod:`featvis.jobs.shard`) and every
process agrees on what batch ``i`` is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple


@dataclass(frozen=True, order=True)
class WorkUnit:
    """One image of a render job: image ``k`` of channel ``channel`` of ``layer``."""

    layer: str
    channel: int
    k: int = 0

    def name(self, diversity: int) -> str:
        """The image's name in its layer (its file stem): ``"476"``, or ``"476_2"`` with diversity."""
        return str(self.channel) if diversity == 1 else f"{self.channel}_{self.k}"

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}" + ("" if self.k == 0 else f"#{self.k}")


@dataclass(frozen=True)
class Batch:
    """Batch number ``index`` of a job: ``channels`` of ``layer``, each with ``diversity`` images
    (a channel's images stay together: its diversity term compares them)."""

    index: int
    layer: str
    channels: Tuple[int, ...]
    diversity: int = 1

    @property
    def units(self) -> List[WorkUnit]:
        return [WorkUnit(self.layer, c, k) for c in self.channels for k in range(self.diversity)]


def plan_batches(layers, batch: int, diversity: int = 1) -> List[Batch]:
    """A job's ordered batches from ``[(layer, channels), ...]``: layer by layer in the order
    given, ``batch`` channels at a time in channel order. The list depends only on its
    arguments (never on how the job is sharded), so batch ``i`` is the same in every process."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    out: List[Batch] = []
    for layer, chans in layers:
        chans = list(chans)
        for i in range(0, len(chans), batch):
            out.append(Batch(len(out), layer, tuple(chans[i:i + batch]), diversity))
    return out


__all__ = ["WorkUnit", "Batch", "plan_batches"]
