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

**Per process.** The counts live in this process. Under ``uvicorn --workers 4`` or
gunicorn each worker has its own budgets, so the whole server allows up to four
times each limit; divide by the worker count when you set them.

**Behind a proxy** every client has the proxy's address, unless the server rewrites
``scope["client"]`` from ``X-Forwarded-For`` (``uvicorn --proxy-headers
--forwarded-allow-ips=...``); otherwise ``max_streams_per_client`` caps the proxy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from sluicegate.engine.metrics import REGISTRY
from sluicegate.errors import ConfigError
from sluicegate.interfaces import Refusal

__all__ = ["Budgets", "Ticket"]


class Ticket:
    """One admitted stream's place; :meth:`release` gives it back (once)."""

    __slots__ = ("_budgets", "client")

    def __init__(self, budgets: Budgets, client: str) -> None:
        self._budgets: Budgets | None = budgets
        #: the client address the place was counted against
        self.client = client

    def release(self) -> None:
        """Give the place back; calling it again does nothing."""
        budgets, self._budgets = self._budgets, None
        if budgets is not None:
            budgets._release(self.client)


class Budgets:
    """At most ``max_streams`` streams, ``max_streams_per_client`` per client address,
    and ``max_buffered`` bytes held by sluicegate across all streams of this process.

    Any limit may be None (no limit). Over a limit, :meth:`admit` returns a
    :class:`~sluicegate.interfaces.Refusal` with ``retry_after`` seconds.

    :param buffered: how many bytes sluicegate holds now; default: the sum over
        live streams in :data:`sluicegate.engine.metrics.REGISTRY`.

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
        buffered: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (
            ("max_streams", max_streams),
            ("max_streams_per_client", max_streams_per_client),
            ("max_buffered", max_buffered),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(f"{name} must be a positive int or None, not {value!r}")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
            raise ConfigError(f"retry_after must be a number of seconds, not {retry_after!r}")
        if not retry_after > 0:
            raise ConfigError(f"retry_after must be more than 0 seconds, not {retry_after!r}")
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        self.max_buffered = max_buffered
        self.retry_after = float(retry_after)
        self._buffered = buffered if buffered is not None else _registry_buffered
        # One event loop needs no lock; a lock makes sync frameworks running
        # responses in threads safe too, and costs ~100 ns per stream.
        self._lock = threading.Lock()
        self._active = 0
        self._per_client: dict[str, int] = {}

    @property
    def active(self) -> int:
        """Streams admitted and not yet released."""
        return self._active

    def active_for(self, client: str) -> int:
        """Streams admitted for ``client`` (an address) and not yet released."""
        return self._per_client.get(client, 0)

    def admit(self, scope: Any) -> Ticket | Refusal:
        """A ticket for a new stream from ``scope["client"]``, or why not."""
        client = client_address(scope)
        # Read before taking the lock: the registry has its own.
        buffered = self._buffered() if self.max_buffered is not None else 0.0
        with self._lock:
            if self.max_streams is not None and self._active >= self.max_streams:
                return self._refuse(f"too many streams ({self._active} of {self.max_streams})")
            mine = self._per_client.get(client, 0)
            limit = self.max_streams_per_client
            if limit is not None and mine >= limit:
                return self._refuse(f"too many streams from {client} ({mine} of {limit})")
            if self.max_buffered is not None and buffered >= self.max_buffered:
                return self._refuse(
                    f"stream buffers are full ({buffered:,.0f} of {self.max_buffered:,} bytes)"
                )
            self._active += 1
            self._per_client[client] = mine + 1
        return Ticket(self, client)

    def _refuse(self, reason: str) -> Refusal:
        return Refusal(reason, self.retry_after)

    def _release(self, client: str) -> None:
        with self._lock:
            self._active -= 1
            left = self._per_client.get(client, 0) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                # Forget idle clients, so the table never grows with addresses seen.
                self._per_client.pop(client, None)


def client_address(scope: Any) -> str:
    """The client's address in an ASGI scope; ``"unknown"`` when the server gives none
    (a Unix socket)."""
    client = scope.get("client") if isinstance(scope, Mapping) else None
    if client:
        return str(client[0])
    return "unknown"


def _registry_buffered() -> float:
    return REGISTRY.snapshot()["bytes_buffered"]
