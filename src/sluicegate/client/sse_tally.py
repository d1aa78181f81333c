"""Counting what SSE subscribers received: every event number, and its delivery latency.

Sans-IO. The load's events carry their number and publish time in ``data``, as JSON
(the format of ``sluicegate serve``'s ``/events``, :mod:`sluicegate.events.feed`, of
the demo's live feed and of the benchmark apps)::

    {"n": 41, "published": 1764435600.123456, ...}

``published`` is ``time.time()`` at publish; the client and the server share a clock
(same machine), so receipt time minus ``published`` is the delivery latency. Event ids are not used
for counting: an in-memory log numbers events, Redis names them by time, and a resync
starts a new run; the number in the payload is the same everywhere.

An SSE connection is ordered, and a resume replays what came after ``Last-Event-ID``,
so one subscriber's numbers must rise by exactly one. :class:`Sequence` counts a jump
as lost events and a number at or below the last one as a duplicate.

>>> s = Sequence()
>>> for n in (5, 6, 8, 8, 9):
...     _ = s.see(n)
>>> s.unique, s.lost, s.duplicated
(4, 1, 1)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sluicegate.client.swarm import percentile
from sluicegate.events.stamp import read_stamp, stamped

__all__ = ["Sequence", "Tally", "merged", "read_stamp", "stamped"]


class Sequence:
    """One subscriber's event numbers, across its reconnects."""

    __slots__ = ("duplicated", "expected", "lost", "unique")

    def __init__(self) -> None:
        self.expected: int | None = None
        self.unique = 0
        self.lost = 0
        self.duplicated = 0

    def see(self, n: int) -> bool:
        """Count event ``n``; return False if it is a duplicate."""
        expected = self.expected
        if expected is not None and n < expected:
            self.duplicated += 1
            return False
        if expected is not None and n > expected:
            self.lost += n - expected
        self.unique += 1
        self.expected = n + 1
        return True

    def restart(self) -> None:
        """Forget the position (after a ``resync``: the server said a gap is coming)."""
        self.expected = None


@dataclass(slots=True)
class Tally:
    """What one class of subscribers (fast, slow, stalled) received, in all."""

    label: str
    subscribers: int
    #: connections that got a ``200 text/event-stream`` head
    connected: int = 0
    reconnects: int = 0
    #: distinct numbered events received, and the numbers skipped or repeated
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    #: events without a ``{"n", "published"}`` stamp, and ``resync`` events
    unstamped: int = 0
    resyncs: int = 0
    heartbeats: int = 0
    bytes: int = 0
    #: publish-to-receipt seconds, one per stamped event
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, message: str) -> None:
        """Count an error; at most five distinct messages are kept."""
        if message in self.errors or len(self.errors) < 5:
            self.errors[message] = self.errors.get(message, 0) + 1

    def add(self, seq: Sequence) -> None:
        """Add one subscriber's final counts."""
        self.events += seq.unique
        self.lost += seq.lost
        self.duplicated += seq.duplicated

    @classmethod
    def from_dict(cls, doc: dict[str, Any], latencies: Iterable[float] = ()) -> Tally:
        """The tally :meth:`to_dict` wrote, counts and errors; its samples, which
        ``to_dict`` leaves out, from ``latencies`` (to merge other processes' tallies).

        >>> t = Tally("fast", 2, events=5, errors={"reset": 1})
        >>> Tally.from_dict(t.to_dict(), [0.25]) == Tally("fast", 2, events=5,
        ...     latencies=array("d", [0.25]), errors={"reset": 1})
        True
        """
        counts = {name: doc[name] for name in _COUNTS}
        return cls(
            doc["label"],
            doc["subscribers"],
            **counts,
            latencies=array("d", latencies),
            errors=dict(doc["errors"]),
        )

    def latency(self, q: float) -> float | None:
        """Latency percentile over every stamped event, seconds."""
        return percentile(self.latencies, q)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and percentiles (no raw samples)."""
        return {
            "label": self.label,
            "subscribers": self.subscribers,
            **{name: getattr(self, name) for name in _COUNTS},
            "latency_p50": _round(self.latency(50)),
            "latency_p99": _round(self.latency(99)),
            "latency_max": _round(max(self.latencies) if self.latencies else None),
            "errors": dict(self.errors),
        }


#: The fields of a :class:`Tally` that are plain counts, summed by :func:`merged`.
_COUNTS = (
    "connected",
    "reconnects",
    "events",
    "lost",
    "duplicated",
    "unstamped",
    "resyncs",
    "heartbeats",
    "bytes",
)


def merged(tallies: Iterable[Tally], label: str = "all") -> Tally:
    """One tally summing ``tallies`` (latency samples concatenated)."""
    out = Tally(label, 0)
    for t in tallies:
        out.subscribers += t.subscribers
        for name in _COUNTS:
            setattr(out, name, getattr(out, name) + getattr(t, name))
        out.latencies.extend(t.latencies)
        for k, v in t.errors.items():
            out.errors[k] = out.errors.get(k, 0) + v
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
