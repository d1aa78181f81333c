"""Per-stream counters that the doctor's probe and exporters read.

Every :class:`~sluicegate.StreamResponse` registers a :class:`StreamMetrics` while it
runs. The pump updates it once per message sent (never per producer chunk), so keeping
it costs nothing measurable. :func:`snapshot` gives a plain dict for samplers, and a
:class:`StreamObserver` subscribed with :meth:`Registry.subscribe` is told when each
stream starts, sends its head and ends (see :mod:`sluicegate.observe`)::

    >>> from sluicegate.engine import metrics
    >>> sorted(metrics.snapshot())[:3]
    ['active_streams', 'blocked_seconds', 'bytes_buffered']
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sluicegate.interfaces import TransferState

#: How a stream stands or ended: the shared vocabulary (kept under its old name).
StreamState = TransferState


@dataclass(slots=True, eq=False)
class StreamMetrics:
    """What one response has done so far. Read it; only the engine writes it."""

    path: str = ""
    started: float = field(default_factory=time.monotonic)
    state: TransferState = TransferState.STREAMING
    #: bytes the producer has handed over (after drops)
    bytes_produced: int = 0
    #: bytes handed to the server's ``send()`` and accepted by it
    bytes_sent: int = 0
    #: bytes sluicegate holds now: queued plus the message being sent
    bytes_buffered: int = 0
    #: the most ``bytes_buffered`` has been
    peak_buffered: int = 0
    #: seconds spent waiting in ``send()``: the time the client held us back
    blocked_seconds: float = 0.0
    #: chunks and bytes a leaky channel dropped
    drops: int = 0
    dropped_bytes: int = 0
    #: the producer has not finished or been closed yet
    producer_running: bool = True
    ended: float | None = None
    #: the request method (GET, HEAD, ...)
    method: str = ""
    #: the status sent in the response head; None until it is sent
    status: int | None = None
    #: when the head went out (``time.monotonic()``): with the first chunk, by design
    first_byte: float | None = None


class StreamObserver(Protocol):
    """Told of each stream's start, head and end; called on the stream's own task.

    Keep each call short: it runs once per stream (never per chunk) but inline. An
    exception is logged once and otherwise ignored: observing never breaks a stream.
    """

    def stream_started(self, m: StreamMetrics) -> None:
        """A stream was registered; nothing is sent yet."""

    def stream_committed(self, m: StreamMetrics) -> None:
        """The head went out (``m.status``, ``m.first_byte`` are set)."""

    def stream_ended(self, m: StreamMetrics) -> None:
        """The stream is over: its last byte was sent (or it was cut); ``m.state`` says how."""


class Registry:
    """All streams of this process: the live ones and totals of the finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[StreamMetrics] = set()
        # Streams whose client left but whose producer has not yet stopped.
        self._lingering: set[StreamMetrics] = set()
        self.finished: dict[str, int] = {}
        self.bytes_sent_finished = 0
        self.drops_finished = 0
        self.blocked_seconds_finished = 0.0
        self._observers: tuple[StreamObserver, ...] = ()
        self._failed_observers: set[int] = set()

    def subscribe(self, observer: StreamObserver) -> None:
        """Tell ``observer`` of every stream from now on (once, however often called)."""
        with self._lock:
            if observer not in self._observers:
                self._observers = (*self._observers, observer)

    def unsubscribe(self, observer: StreamObserver) -> None:
        """Stop telling ``observer``; a no-op if it was not subscribed."""
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    def open(self, path: str = "", method: str = "") -> StreamMetrics:
        """Register a new stream and return its counters."""
        m = StreamMetrics(path=path, method=method)
        with self._lock:
            self._active.add(m)
        if self._observers:
            self._notify("stream_started", m)
        return m

    def committed(self, m: StreamMetrics, status: int) -> None:
        """Record that a stream's head (with ``status``) was sent."""
        m.status = status
        m.first_byte = time.monotonic()
        if self._observers:
            self._notify("stream_committed", m)

    def close(self, m: StreamMetrics, state: TransferState) -> None:
        """Move a stream to the finished totals."""
        m.state = state
        m.ended = time.monotonic()
        m.bytes_buffered = 0
        with self._lock:
            self._active.discard(m)
            self.finished[state] = self.finished.get(state, 0) + 1
            self.bytes_sent_finished += m.bytes_sent
            self.drops_finished += m.drops
            self.blocked_seconds_finished += m.blocked_seconds
            if m.producer_running:
                self._lingering.add(m)
        if self._observers:
            self._notify("stream_ended", m)

    def _notify(self, event: str, m: StreamMetrics) -> None:
        for observer in self._observers:
            call: Callable[[StreamMetrics], None] = getattr(observer, event)
            try:
                call(m)
            except Exception:
                if id(observer) not in self._failed_observers:
                    self._failed_observers.add(id(observer))
                    logging.getLogger("sluicegate").exception(
                        "stream observer %r failed (logged once; the stream goes on)", observer
                    )

    def producer_stopped(self, m: StreamMetrics) -> None:
        """Record that a stream's producer has finished or been closed."""
        m.producer_running = False
        with self._lock:
            self._lingering.discard(m)

    def active(self) -> list[StreamMetrics]:
        """The streams running now."""
        with self._lock:
            return list(self._active)

    def snapshot(self) -> dict[str, float]:
        """Totals right now, as plain numbers (safe to call from any thread)."""
        with self._lock:
            active = list(self._active)
            lingering = len(self._lingering)
            finished = dict(self.finished)
            sent = self.bytes_sent_finished
            drops = self.drops_finished
            blocked = self.blocked_seconds_finished
        return {
            "active_streams": len(active),
            "bytes_buffered": sum(m.bytes_buffered for m in active),
            "bytes_sent": sent + sum(m.bytes_sent for m in active),
            "blocked_seconds": blocked + sum(m.blocked_seconds for m in active),
            "drops": drops + sum(m.drops for m in active),
            "disconnects": finished.get(TransferState.CLIENT_GONE, 0),
            "completed": finished.get(TransferState.COMPLETED, 0),
            "failed": finished.get(TransferState.FAILED, 0),
            "timed_out": finished.get(TransferState.TIMED_OUT, 0),
            "lingering_producers": lingering,
        }


#: The process-wide registry the engine writes to.
REGISTRY = Registry()


def snapshot() -> dict[str, float]:
    """Totals of :data:`REGISTRY` right now; see :meth:`Registry.snapshot`."""
    return REGISTRY.snapshot()
