"""Scripted client behaviour over time: pauses, rate changes, a deliberate cut (sans-IO).

Grammar (spaces allowed around every token)::

    schedule := item ("," item)*
    item     := TIME ":" action
    action   := "pause" ["=" DURATION]     # no duration: pause until the fetch ends
              | "rate=" RATE               # RATE as for --limit-rate, or "unlimited"
              | "stop"                     # close the connection: an incomplete transfer

``TIME`` is measured from the moment the response headers arrived (the start of
the body) on the wall clock, pauses included; an event whose time passes during
a pause takes effect when the pause ends. Items may come in any order::

    >>> s = parse_schedule("1s:pause=19s, 5s:rate=1M")
    >>> [(e.at, e.action, e.value) for e in s.events]
    [(1.0, 'pause', 19.0), (5.0, 'rate', 1048576.0)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sluicegate.errors import ConfigError
from sluicegate.units import parse_duration, parse_rate

__all__ = ["Event", "Schedule", "ScheduleCursor", "parse_schedule"]

Action = Literal["pause", "rate", "stop"]


@dataclass(frozen=True, slots=True)
class Event:
    """One scheduled change: at ``at`` seconds, do ``action``.

    ``value`` is the pause length in seconds (``math.inf`` for "until the end")
    for ``pause``, bytes per second (``None`` = unlimited) for ``rate``, and
    ``None`` for ``stop``.
    """

    at: float
    action: Action
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """An ordered list of :class:`Event`; build with :func:`parse_schedule` or by hand."""

    events: tuple[Event, ...] = ()

    @classmethod
    def of(cls, events: Iterable[Event]) -> Schedule:
        """Make a schedule from events in any order (stable by time)."""
        return cls(tuple(sorted(events, key=lambda e: e.at)))

    def __add__(self, other: Schedule) -> Schedule:
        return Schedule.of(self.events + other.events)

    @property
    def pauses(self) -> bool:
        """True if any event pauses reading."""
        return any(e.action == "pause" for e in self.events)


def _fail(spec: str, index: int, item: str, why: str) -> ConfigError:
    return ConfigError(f"bad schedule {spec!r}: item {index} {item.strip()!r}: {why}")


def _parse_item(spec: str, index: int, item: str) -> Event:
    when, colon, action = item.partition(":")
    if not colon:
        raise _fail(spec, index, item, "expected TIME:ACTION, e.g. 1s:pause=19s")
    try:
        at = parse_duration(when)
    except ConfigError as exc:
        raise _fail(spec, index, item, f"time: {exc}") from None
    if math.isinf(at):
        raise _fail(spec, index, item, "time must be finite")
    name, eq, arg = (part.strip() for part in action.partition("="))
    lowered = name.lower()
    if lowered == "pause":
        if not eq:
            return Event(at, "pause", math.inf)
        try:
            length = parse_duration(arg)
        except ConfigError as exc:
            raise _fail(spec, index, item, f"pause: {exc}") from None
        if length <= 0:
            raise _fail(spec, index, item, "pause must last more than 0 s")
        return Event(at, "pause", length)
    if lowered == "rate":
        if not eq or not arg:
            raise _fail(spec, index, item, "rate needs a value, e.g. rate=1M or rate=unlimited")
        if arg.lower() in ("unlimited", "max", "inf"):
            return Event(at, "rate", None)
        try:
            return Event(at, "rate", parse_rate(arg))
        except ConfigError as exc:
            raise _fail(spec, index, item, str(exc)) from None
    if lowered == "stop":
        if eq:
            raise _fail(spec, index, item, "stop takes no value")
        return Event(at, "stop")
    raise _fail(spec, index, item, f"unknown action {name!r} (use pause, rate= or stop)")


def parse_schedule(spec: str) -> Schedule:
    """Parse ``"1s:pause=19s,5s:rate=1M"`` into a :class:`Schedule`.

    Raises :class:`~sluicegate.errors.ConfigError` naming the item (1-based) and
    what is wrong with it.
    """
    if not spec.strip():
        raise ConfigError("bad schedule '': expected TIME:ACTION items, e.g. 1s:pause=19s")
    items = spec.split(",")
    return Schedule.of(_parse_item(spec, i, item) for i, item in enumerate(items, 1))


class ScheduleCursor:
    """Walks a schedule as time passes: ``pop(elapsed)`` hands out events once due."""

    def __init__(self, schedule: Schedule) -> None:
        self._events = list(schedule.events)
        self._next = 0

    def pop(self, elapsed: float) -> Event | None:
        """The next event if its time is at or before ``elapsed``; each is given once."""
        if self._next < len(self._events) and self._events[self._next].at <= elapsed:
            self._next += 1
            return self._events[self._next - 1]
        return None

    def next_at(self) -> float | None:
        """Time of the next pending event, or ``None`` when none is left."""
        return self._events[self._next].at if self._next < len(self._events) else None
