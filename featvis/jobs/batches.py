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
    """One image of a render job: image ``k`` of channel ``channel`` of ``layer``; ``negative``: one
    of its minimizing images (``featvis render --negative``)."""

    layer: str
    channel: int
    k: int = 0
    negative: bool = False

    def name(self, diversity: int) -> str:
        """The image's name in its layer (its file stem): ``"476"``, or ``"476_2"`` with diversity;
        a negative image's ``"476_neg"`` (``"476_neg_2"``)."""
        stem = f"{self.channel}_neg" if self.negative else str(self.channel)
        return stem if diversity == 1 else f"{stem}_{self.k}"

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}" + (" neg" if self.negative else "") + ("" if self.k == 0 else f"#{self.k}")


@dataclass(frozen=True)
class Batch:
    """Batch number ``index`` of a job: ``channels`` of ``layer``, each with ``diversity`` images
    (a channel's images stay together: its diversity term compares them); ``negative``: their
    minimizing images."""

    index: int
    layer: str
    channels: Tuple[int, ...]
    diversity: int = 1
    negative: bool = False

    @property
    def units(self) -> List[WorkUnit]:
        return [WorkUnit(self.layer, c, k, self.negative) for c in self.channels for k in range(self.diversity)]


def plan_batches(layers, batch: int, diversity: int = 1, negative: bool = False) -> List[Batch]:
    """A job's ordered batches from ``[(layer, channels), ...]``: layer by layer in the order
    given, ``batch`` channels at a time in channel order. The list depends only on its
    arguments (never on how the job is sharded), so batch ``i`` is the same in every process.
    With ``negative`` the same batches of minimizing images follow all of them, so that the
    maximizing batches keep their numbers (a folder rendered without ``--negative`` resumes)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    out: List[Batch] = []
    for sign in ((False, True) if negative else (False,)):
        for layer, chans in layers:
            chans = list(chans)
            for i in range(0, len(chans), batch):
                out.append(Batch(len(out), layer, tuple(chans[i:i + batch]), diversity, sign))
    return out


__all__ = ["WorkUnit", "Batch", "plan_batches"]
