"""Counters of live events in this process, beside the engine's stream metrics.

The engine's :mod:`sluicegate.engine.metrics` counts bytes per stream; this counts
what only a broadcast knows: subscribers, events published, and what each
slow-subscriber policy did. Updated with plain integer increments on the event loop
(no lock: one writer); :func:`snapshot` may be read from any thread, as the doctor's
probe does::

    >>> from sluicegate.events import metrics
    >>> sorted(metrics.snapshot())[:3]
    ['backend_errors', 'cut', 'dropped']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["COUNTERS", "EventCounters", "snapshot"]


@dataclass(slots=True)
class EventCounters:
    """What every :class:`~sluicegate.events.broadcast.Broadcast` of this process did."""

    #: subscribers connected now
    subscribers: int = 0
    #: subscriptions ever made
    subscribed: int = 0
    #: events published by this process
    published: int = 0
    #: events a ``drop_oldest`` subscriber lost (its oldest queued ones)
    dropped: int = 0
    #: events a ``latest`` subscriber never got because a newer one of its key replaced them
    replaced: int = 0
    #: ``disconnect`` subscribers cut after staying full too long
    cut: int = 0
    #: events sent again from the log to resuming subscribers
    replayed: int = 0
    #: resuming subscribers whose id was too old (they got a ``resync`` event)
    resyncs: int = 0
    #: streams ended by a backend failure (Redis went away)
    backend_errors: int = 0


#: The process-wide counters.
COUNTERS = EventCounters()


def snapshot() -> dict[str, float]:
    """The counters right now, as plain numbers."""
    return {k: float(v) for k, v in asdict(COUNTERS).items()}
