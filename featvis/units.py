"""Units and channel specs: the one parser of ``"layer:channel@x,y"`` and of ``--channels SPEC``.

Everything that reads a unit from text (``render(model, "mixed4a:476")``, figure specs, recipes,
the render job, topk) goes through :class:`Unit`; everything that reads a set of channels
(``all``, ``0:64``, ``3,17,476``, ``0:8,476``) goes through :class:`ChannelSpec`. This module
imports neither torch nor the rest of featvis, so it is cheap to import anywhere.

Coordinates: in ``layer:channel@x,y``, ``x`` is the column and ``y`` the row of the layer's
spatial map *for the bare image at the size the user renders* (what ``featvis layers MODEL
--size N`` shows); see :func:`featvis.objectives.neuron`. In a transformer layer that map is the
patch grid, and ``layer:channel@cls`` names a token (the class token) instead of a position: the
unit reads the pseudo-layer ``layer@cls``, one vector per image (:mod:`featvis.models.layout`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import UsageError

#: What ``--channels`` and ``channels=`` accept, for messages and ``--help``.
SPEC_HELP = "all, a range like 0:64, a list like 3,17,476, or a mix like 0:8,476"
#: What a unit looks like, for messages.
UNIT_HELP = ("'layer:channel' (e.g. 'mixed4a:476'), 'layer:channel@x,y' for a neuron (x the column, y the row), "
             "or 'layer:channel@cls' for a transformer's class token")

_TOKEN = r"[A-Za-z_]\w*"
_UNIT = re.compile(r"^(?P<layer>[^:@\s]+)(?:@(?P<ltoken>" + _TOKEN + r"))?:(?P<n>\d+)"
                   r"(?:@(?:(?P<x>\d+),(?P<y>\d+)|(?P<token>" + _TOKEN + r")))?$")
_SPEC_PART = re.compile(r"^(\d*):(\d*)$|^(\d+)$")


@dataclass(frozen=True)
class Unit:
    """One unit of a layer: channel ``channel``, or the neuron at column ``x``, row ``y``. A named
    token is part of the layer: ``blocks.11:5@cls`` is channel 5 of the pseudo-layer ``blocks.11@cls``.

    >>> Unit.parse("mixed4a:476@7,7")
    Unit(layer='mixed4a', channel=476, x=7, y=7)
    >>> str(Unit("mixed4a", 476))
    'mixed4a:476'
    >>> Unit.parse("blocks.11:5@cls")
    Unit(layer='blocks.11@cls', channel=5, x=None, y=None)
    """

    layer: str
    channel: int
    x: Optional[int] = None
    y: Optional[int] = None

    def __post_init__(self):
        if (self.x is None) != (self.y is None):
            raise UsageError(f"unit {self.layer}:{self.channel}: give both x and y for a neuron, or neither")

    @property
    def is_neuron(self) -> bool:
        """Whether this names one position (``@x,y``) rather than a whole channel."""
        return self.x is not None

    @classmethod
    def parse(cls, text) -> "Unit":
        """A unit from ``"layer:channel"`` or ``"layer:channel@x,y"``; a ``(layer, channel)`` pair
        or a ``Unit`` is accepted as is. Raises :class:`~featvis.errors.UsageError`."""
        if isinstance(text, Unit):
            return text
        if isinstance(text, tuple) and len(text) == 2 and isinstance(text[0], str):
            return cls(text[0], int(text[1]))
        m = _UNIT.match(str(text).strip()) if isinstance(text, str) else None
        if not m:
            raise UsageError(f"cannot read unit {text!r}: expected {UNIT_HELP}")
        x = None if m.group("x") is None else int(m.group("x"))
        y = None if m.group("y") is None else int(m.group("y"))
        token = m.group("token") or m.group("ltoken")
        if m.group("token") and m.group("ltoken"):
            raise UsageError(f"cannot read unit {text!r}: it names two tokens; write 'layer:channel@cls'")
        return cls(m.group("layer") + (f"@{token}" if token else ""), int(m.group("n")), x, y)

    def __str__(self) -> str:
        layer, mark, token = self.layer.partition("@")
        where = f"@{token}" if mark else ("" if self.x is None else f"@{self.x},{self.y}")
        return f"{layer}:{self.channel}{where}"


@dataclass(frozen=True)
class ChannelSpec:
    """A parsed ``SPEC``: ``all``, or ranges ``(start, stop)`` (``stop`` excluded, ``None`` for an
    open end as in ``8:``). Nothing is expanded until :meth:`resolve`, which checks the bounds
    first, so ``0:50000000`` on a 508-channel layer fails at once."""

    text: str
    all: bool
    ranges: Tuple[Tuple[int, Optional[int]], ...]

    @classmethod
    def parse(cls, spec) -> "ChannelSpec":
        """Check the syntax; raises :class:`~featvis.errors.UsageError` naming the bad part."""
        text = str(spec).strip()
        if len(text) > MAX_SPEC_CHARS:
            raise UsageError(f"channel spec is too long ({len(text)} characters, at most {MAX_SPEC_CHARS}); "
                             "use ranges such as 0:64 or all")
        if text == "all":
            return cls(text, True, ())
        ranges = []
        for part in text.split(","):
            m = _SPEC_PART.match(part.strip())
            if not m:
                raise UsageError(f"bad channel spec {spec!r} (at {part.strip()!r}): expected {SPEC_HELP}")
            if m.group(3) is not None:
                n = int(m.group(3))
                ranges.append((n, n + 1))
                continue
            start, stop = int(m.group(1) or 0), (int(m.group(2)) if m.group(2) else None)
            if stop is not None and stop <= start:
                raise UsageError(f"bad channel spec {spec!r}: range {part.strip()!r} is empty; "
                                 "write start:stop with stop > start, e.g. 0:64")
            ranges.append((start, stop))
        return cls(text, False, tuple(ranges))

    def largest(self) -> Optional[int]:
        """The largest channel named explicitly (``None`` for ``all`` or only open ranges)."""
        ends = [(start if stop is None else stop - 1) for start, stop in self.ranges]
        return max(ends) if ends else None

    def resolve(self, count: Optional[int] = None, where: str = "the layer") -> List[int]:
        """The channels, sorted and without repeats. ``count`` (the layer's channels) is needed for
        ``all`` and open ranges; with it, channels out of range raise before anything is expanded.
        Without it only closed ranges and single channels are returned."""
        if self.all:
            return list(range(count)) if count is not None else []
        if count is not None:
            top = self.largest()
            if top is not None and top >= count:
                raise UsageError(f"channel {self._first_bad(count)} is out of range: {where} has {count} channels "
                                 f"(0..{count - 1}); use e.g. --channels 0:{count} or --channels all")
        if count is None and sum(stop - start for start, stop in self.ranges if stop is not None) > MAX_CHANNELS:
            raise UsageError(f"--channels {self.text} selects more than {MAX_CHANNELS} channels; no layer has that many")
        chans = set()
        for start, stop in self.ranges:
            if stop is None:
                if count is None:
                    continue
                stop = count
            chans.update(range(start, stop))
        return sorted(chans)

    def _first_bad(self, count: int) -> int:
        return min(max(start, count) for start, stop in self.ranges if (start if stop is None else stop - 1) >= count)

    def __str__(self) -> str:
        return self.text


#: Bounds that keep a channel spec cheap to check: no layer has a million channels, and no sensible
#: spec is longer than a few thousand characters (a 50M-channel range would take gigabytes as a list).
MAX_CHANNELS = 1 << 20
MAX_SPEC_CHARS = 20_000


def parse_channels(spec, count: Optional[int] = None, where: str = "the layer") -> List[int]:
    """Channel numbers from ``SPEC``: ``all``, ``0:64`` (64 excluded), ``3,17,476``, ``0:8,476``.

    Returns them sorted, without repeats. ``count`` (the layer's channels) is needed for ``all``
    and open ranges (``8:``); with it, channels out of range raise :class:`UsageError` (before any
    range is expanded). Without it only the syntax is checked (``all`` and open ends give ``[]``).
    """
    return ChannelSpec.parse(spec).resolve(count, where)


def spec_of(chans) -> str:
    """Channels as the shortest spec that :func:`parse_channels` reads back: ``[0,1,2,3,7]`` -> ``"0:4,7"``."""
    parts, chans = [], sorted(set(chans))
    i = 0
    while i < len(chans):
        j = i
        while j + 1 < len(chans) and chans[j + 1] == chans[j] + 1:
            j += 1
        parts.append(str(chans[i]) if i == j else f"{chans[i]}:{chans[j] + 1}")
        i = j + 1
    return ",".join(parts)


__all__ = ["Unit", "ChannelSpec", "parse_channels", "SPEC_HELP", "UNIT_HELP", "spec_of"]
