"""One finished stream as plain values: what every exporter records, decided once.

The engine keeps live, mutable counters (:class:`~sluicegate.engine.metrics.StreamMetrics`);
exporters want a frozen record with the HTTP status to report. The one decision here is
the status: a stream whose client went away is reported as ``499`` (nginx's "client
closed request"), whatever head was sent, because what the server meant to send is not
what happened; a stream that ended before any head (a server shutdown) as ``500``.

>>> from sluicegate.engine.metrics import StreamMetrics
>>> m = StreamMetrics(path="/big", method="GET", started=10.0, status=200, first_byte=10.25)
>>> m.state, m.ended, m.bytes_sent = "client_gone", 12.0, 65536
>>> o = outcome_of(m)
>>> o.status, o.time_to_first_byte, o.duration, o.error_type
(499, 0.25, 2.0, 'client_gone')
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sluicegate.engine.metrics import StreamMetrics, StreamState

__all__ = ["CLIENT_CLOSED_REQUEST", "StreamOutcome", "outcome_of"]

#: nginx's non-standard status for "the client closed the connection first"
CLIENT_CLOSED_REQUEST = 499


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """What one stream did, start to last byte."""

    method: str
    path: str
    #: the status to report: the head's, 499 if the client left, 500 if no head went out
    status: int
    #: the engine's own word: completed, failed, client_gone or timed_out (a guard cut)
    outcome: StreamState
    #: seconds from the stream's start to its end (its last byte, or the cut)
    duration: float
    #: seconds from the start to the head, sent with the first chunk; None if never sent
    time_to_first_byte: float | None
    bytes_sent: int
    #: chunks and bytes a leaky channel dropped
    drops: int
    dropped_bytes: int
    #: seconds the server's ``send()`` kept the stream waiting for the client
    blocked_seconds: float

    @property
    def guard_cut(self) -> bool:
        """The slow-reader guard cut this stream (stall timeout or minimum rate)."""
        return self.outcome == "timed_out"

    @property
    def error_type(self) -> str | None:
        """OpenTelemetry's ``error.type``: the outcome when the body did not arrive whole."""
        return None if self.outcome == "completed" else self.outcome


def outcome_of(m: StreamMetrics) -> StreamOutcome:
    """The record of a finished stream (``m.ended`` set); of one still running, so far."""
    ended = m.ended if m.ended is not None else time.monotonic()
    if m.state == "client_gone":
        status = CLIENT_CLOSED_REQUEST
    else:
        status = m.status if m.status is not None else 500
    return StreamOutcome(
        method=m.method,
        path=m.path,
        status=status,
        outcome=m.state,
        duration=max(0.0, ended - m.started),
        time_to_first_byte=None if m.first_byte is None else max(0.0, m.first_byte - m.started),
        bytes_sent=m.bytes_sent,
        drops=m.drops,
        dropped_bytes=m.dropped_bytes,
        blocked_seconds=m.blocked_seconds,
    )
