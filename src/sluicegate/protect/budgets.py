"""Stream and memory budgets: refuse a new stream (503 + Retry-After) when over any.

A :class:`Budgets` is an :class:`~sluicegate.interfaces.Admission`: every
:class:`~sluicegate.StreamResponse` asks it before producing anything, and gives its
:class:`Ticket` back when it ends, however it ends::

    from sluicegate import defaults
    from sluicegate.protect.budgets import Budgets

    defaults.admission = Budgets(max_streams=1000, max_streams_per_client=8,
                                 max_buffered=256 * 2**20)

Budgets only ever turn *new* streams away: a running stream is never slowed, paused or
cut to make room (that is the guard's job, for slow readers only).

**What ``max_buffered`` counts, and why it reserves.** Each admitted stream counts
``max(reservation, held)``: ``held`` is what its metrics say sluicegate holds now
(queued bytes plus the whole chunk whose slices are still with the server). At
admission a stream holds nothing yet, so a burst of 500 arrivals would all see a free
budget; instead each new stream *reserves* an estimate of what streams on the same
path have held at their peak, and the decision (sum of what is counted now, plus the
new reservation, against the budget) is taken under one lock, so concurrent
admissions cannot overshoot together. The estimate is the largest peak of the last
16 streams on that path that *settled* (ran ``settle`` seconds, 1 s by default) or
ended after holding something, never below ``min_reserve``; a path not seen yet
reserves ``reserve`` (1 MiB by default, a producer's large chunk). Once a stream has settled its
reservation is dropped and only what it really holds counts: many idle SSE streams,
which hold almost nothing, cost almost nothing after their first second, and the path
then reserves little for the next ones. Streams still unsettled (the last second's
arrivals) are summed exactly at every admission; the sum over settled streams is
refreshed at most every 50 ms (``REFRESH``), so a server holding 10,000 idle streams
does not pay an O(streams) walk per new stream (0.9 ms each, measured); between
refreshes that sum can be late by what settled streams did in those 50 ms (a released
stream leaves it at once). One stream is always admitted when nothing is counted, so
a budget smaller than one reservation still serves one at a time. Memory outside
sluicegate (the server's own per-connection state) is not counted: BENCHMARKS.md
("Admission") measures it per stream.

**Per process.** The counts live in this process. Under ``uvicorn --workers 4`` or
gunicorn each worker has its own budgets, so the whole server allows up to four
times each limit; divide by the worker count when you set them.

**Behind a proxy** every client has the proxy's address, unless the server rewrites
``scope["client"]`` from ``X-Forwarded-For`` (``uvicorn --proxy-headers
--forwarded-allow-ips=...``); otherwise ``max_streams_per_client`` caps the proxy.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from sluicegate.errors import ConfigError
from sluicegate.interfaces import HeldBytes, Refusal

__all__ = ["Budgets", "Ticket"]

MiB = 2**20
#: what a stream on a path not seen yet reserves: one large producer chunk
DEFAULT_RESERVE = 1 * MiB
#: the least a stream reserves, however little its path's streams held: one message
MIN_RESERVE = 4 * 1024
#: peaks remembered per path, and paths remembered (oldest forgotten first)
PEAKS_PER_PATH = 16
PATHS = 256
#: seconds between two walks over the settled streams
REFRESH = 0.05


class Ticket:
    """One admitted stream's place; :meth:`release` gives it back (once)."""

    __slots__ = (
        "_budgets",
        "_held",
        "_in_sum",
        "_settled",
        "admitted",
        "client",
        "path",
        "reserved",
    )

    def __init__(self, budgets: Budgets, client: str, path: str, reserved: int, now: float) -> None:
        self._budgets: Budgets | None = budgets
        #: the client address the place was counted against
        self.client = client
        #: the path whose estimate it reserved and whose estimate its peak feeds
        self.path = path
        #: bytes counted for it until it settles, whatever it holds
        self.reserved = reserved
        #: ``clock()`` when it was admitted
        self.admitted = now
        self._held: HeldBytes | None = None
        self._settled = False
        self._in_sum = 0  # what the last walk over settled streams counted for it

    def watch(self, held: HeldBytes) -> None:
        """Count what ``held`` (the stream's metrics) says the stream holds."""
        self._held = held

    def counted(self) -> int:
        """What this stream counts against ``max_buffered`` now."""
        held = self._held.bytes_buffered if self._held is not None else 0
        return held if self._settled else max(self.reserved, held)

    def peak(self) -> int:
        """The most the stream has held so far (0 before :meth:`watch`)."""
        return self._held.peak_buffered if self._held is not None else 0

    def release(self) -> None:
        """Give the place back; calling it again does nothing."""
        budgets, self._budgets = self._budgets, None
        if budgets is not None:
            budgets._release(self)


class Budgets:
    """At most ``max_streams`` streams, ``max_streams_per_client`` per client address,
    and ``max_buffered`` bytes held by sluicegate across all streams it admitted.

    Any limit may be None (no limit). Over a limit, :meth:`admit` returns a
    :class:`~sluicegate.interfaces.Refusal` with ``retry_after`` seconds. How
    ``max_buffered`` counts (reservations, settling) is in the module docstring.

    :param reserve: bytes a stream reserves on a path with no settled stream yet.
    :param min_reserve: the least a stream reserves.
    :param settle: seconds after which a stream counts only what it holds.
    :param clock: the time source (tests pass their own).

    >>> b = Budgets(max_streams=1)
    >>> t = b.admit({"type": "http", "client": ("10.0.0.1", 5000)})
    >>> b.admit({"type": "http", "client": ("10.0.0.2", 5000)})
    Refusal(reason='too many streams (1 of 1)', retry_after=2.0)
    >>> t.release(); b.active
    0
    """

    def __init__(
        self,
        *,
        max_streams: int | None = None,
        max_streams_per_client: int | None = None,
        max_buffered: int | None = None,
        retry_after: float = 2.0,
        reserve: int = DEFAULT_RESERVE,
        min_reserve: int = MIN_RESERVE,
        settle: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_streams", max_streams),
            ("max_streams_per_client", max_streams_per_client),
            ("max_buffered", max_buffered),
        ):
            if value is not None and not _positive_int(value):
                raise ConfigError(f"{name} must be a positive int or None, not {value!r}")
        for name, value in (("reserve", reserve), ("min_reserve", min_reserve)):
            if not _positive_int(value):
                raise ConfigError(f"{name} must be a positive int, not {value!r}")
        if min_reserve > reserve:
            raise ConfigError(f"min_reserve ({min_reserve}) must not exceed reserve ({reserve})")
        for name, seconds in (("retry_after", retry_after), ("settle", settle)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise ConfigError(f"{name} must be a number of seconds, not {seconds!r}")
            if not 0 < seconds < float("inf"):
                raise ConfigError(f"{name} must be more than 0 seconds, not {seconds!r}")
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        self.max_buffered = max_buffered
        self.retry_after = float(retry_after)
        self.reserve = reserve
        self.min_reserve = min_reserve
        self.settle = float(settle)
        self._clock = clock
        # One event loop needs no lock; a lock makes sync frameworks running
        # responses in threads safe too, and makes count-and-admit one step.
        self._lock = threading.Lock()
        self._active = 0
        self._per_client: dict[str, int] = {}
        self._fresh: set[Ticket] = set()  # not settled yet: summed at every admission
        self._settled: set[Ticket] = set()
        self._settled_sum = 0
        self._settled_at = float("-inf")
        self._peaks: OrderedDict[str, deque[int]] = OrderedDict()

    @property
    def active(self) -> int:
        """Streams admitted and not yet released."""
        return self._active

    def active_for(self, client: str) -> int:
        """Streams admitted for ``client`` (an address) and not yet released."""
        return self._per_client.get(client, 0)

    def buffered(self) -> int:
        """Bytes counted against ``max_buffered`` now (reservations included)."""
        with self._lock:
            return self._count(self._clock())

    def reservation(self, path: str) -> int:
        """What a new stream on ``path`` would reserve now."""
        with self._lock:
            self._count(self._clock())
            return self._estimate(path)

    def admit(self, scope: Any) -> Ticket | Refusal:
        """A ticket for a new stream from ``scope["client"]``, or why not."""
        client = client_address(scope)
        path = str(scope.get("path", "")) if isinstance(scope, Mapping) else ""
        with self._lock:
            if self.max_streams is not None and self._active >= self.max_streams:
                return self._refuse(f"too many streams ({self._active} of {self.max_streams})")
            mine = self._per_client.get(client, 0)
            limit = self.max_streams_per_client
            if limit is not None and mine >= limit:
                return self._refuse(f"too many streams from {client} ({mine} of {limit})")
            now = self._clock()
            reserve = self._estimate(path)
            if self.max_buffered is not None:
                # Counted and decided under one lock: a burst cannot all see room.
                counted = self._count(now)
                if counted > 0 and counted + reserve > self.max_buffered:
                    return self._refuse(
                        f"stream buffers are full ({counted:,} of {self.max_buffered:,} bytes"
                        f" counted, a new stream reserves {reserve:,})"
                    )
            self._active += 1
            self._per_client[client] = mine + 1
            ticket = Ticket(self, client, path, reserve, now)
            self._fresh.add(ticket)
        return ticket

    def _count(self, now: float) -> int:
        """What all live tickets count; settle those old enough (lock held)."""
        total = 0
        newly_settled = False
        for ticket in list(self._fresh):
            if now - ticket.admitted >= self.settle:
                ticket._settled = newly_settled = True
                self._fresh.discard(ticket)
                self._settled.add(ticket)
                self._remember(ticket.path, ticket.peak())
            else:
                total += ticket.counted()
        if newly_settled or now - self._settled_at >= REFRESH:
            settled_sum = 0
            for ticket in self._settled:
                ticket._in_sum = ticket.counted()
                settled_sum += ticket._in_sum
            self._settled_sum = settled_sum
            self._settled_at = now
        return total + self._settled_sum

    def _estimate(self, path: str) -> int:
        peaks = self._peaks.get(path)
        if not peaks:
            return self.reserve
        return max(self.min_reserve, max(peaks))

    def _remember(self, path: str, peak: int) -> None:
        peaks = self._peaks.get(path)
        if peaks is None:
            peaks = self._peaks[path] = deque(maxlen=PEAKS_PER_PATH)
            if len(self._peaks) > PATHS:
                self._peaks.popitem(last=False)
        else:
            self._peaks.move_to_end(path)
        peaks.append(peak)

    def _refuse(self, reason: str) -> Refusal:
        return Refusal(reason, self.retry_after)

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            self._fresh.discard(ticket)
            if ticket in self._settled:
                self._settled.discard(ticket)
                self._settled_sum -= ticket._in_sum
            # A stream that ended before settling teaches its path only if it held
            # something: a HEAD or a refused start must not make a path look cheap.
            if not ticket._settled and ticket.peak() > 0:
                self._remember(ticket.path, ticket.peak())
            self._active -= 1
            left = self._per_client.get(ticket.client, 0) - 1
            if left > 0:
                self._per_client[ticket.client] = left
            else:
                # Forget idle clients, so the table never grows with addresses seen.
                self._per_client.pop(ticket.client, None)


def client_address(scope: Any) -> str:
    """The client's address in an ASGI scope; ``"unknown"`` when the server gives none
    (a Unix socket)."""
    client = scope.get("client") if isinstance(scope, Mapping) else None
    if client:
        return str(client[0])
    return "unknown"


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
