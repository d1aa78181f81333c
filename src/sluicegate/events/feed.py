"""A numbered live feed to try live events without writing an app: ``/events``.

``sluicegate serve`` serves it (see :mod:`sluicegate.cli.examples`)::

    curl -N 'http://127.0.0.1:8080/events?rate=5&size=200'

Each distinct ``(rate, size)`` is one feed (one topic); every event's data is JSON
with its number ``n`` (1, 2, 3, … with no gap) and the wall-clock time it was
published (``published``, seconds since 1970), padded to ``size`` bytes::

    id: 1795972011933000-42
    event: tick
    data: {"n":42,"published":1795972011.93,"pad":"....."}

**Bounded by the server, not the client.** A client picks ``rate`` and ``size``
within documented caps (:data:`MAX_RATE`, :data:`MAX_SIZE`, :data:`MAX_BYTES_PER_SECOND`;
a 400 above them), and at most :data:`MAX_FEEDS` feeds run at once (a 503 for a new
one beyond that). A feed's publisher runs only while this process has subscribers to
it (and :data:`IDLE_GRACE` seconds after the last leaves).

**Several workers** (``sluicegate serve --broadcast redis://…``): every worker with
subscribers runs a publisher, but only the one holding the feed's lease (see
:class:`~sluicegate.events.backend.Coordination`) publishes, and the number comes
from a shared counter, so two workers make one feed, not two. When that worker
stops, another takes the lease within :data:`LEASE_TTL` seconds and goes on counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sluicegate.errors import ConfigError, OverBudget
from sluicegate.events.backend import Coordination
from sluicegate.events.broadcast import Broadcast
from sluicegate.events.errors import BackendUnavailable
from sluicegate.events.stamp import stamped
from sluicegate.events.stream import EventStream
from sluicegate.events.subscription import POLICIES, SlowPolicy
from sluicegate.units import parse_duration, parse_rate, parse_size

__all__ = [
    "IDLE_GRACE",
    "LEASE_TTL",
    "MAX_BYTES_PER_SECOND",
    "MAX_FEEDS",
    "MAX_LIMIT",
    "MAX_RATE",
    "MAX_SIZE",
    "FeedSpec",
    "NumberedFeeds",
]

log = logging.getLogger("sluicegate.events")

#: Events per second one feed may be asked for.
MAX_RATE: Final = 1000.0
#: Bytes of data one event may be asked to carry.
MAX_SIZE: Final = 8 * 1024
#: The smallest ``size``: the number and the time must fit.
MIN_SIZE: Final = 64
#: ``rate x size`` of one feed.
MAX_BYTES_PER_SECOND: Final = 1024 * 1024
#: Feeds running at once in one process.
MAX_FEEDS: Final = 8
#: The largest per-subscriber buffer a client may ask for (``limit``).
MAX_LIMIT: Final = 1024 * 1024
#: Seconds a feed's lease lasts unless renewed (renewed every third of it).
LEASE_TTL: Final = 2.0
#: Seconds a feed keeps publishing after its last local subscriber left.
IDLE_GRACE: Final = 5.0
#: Events each feed keeps for clients that resume.
REPLAY: Final = 1000


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """What one ``/events`` request asks for; checked against the caps.

    >>> FeedSpec.from_query({"rate": "20/s", "size": "1K"}).topic
    'feed:20:1024'
    >>> FeedSpec.from_query({"rate": "5000"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sluicegate.errors.ConfigError: rate must be at most 1000 events/s, not 5000
    """

    rate: float = 1.0
    size: int = 200
    policy: SlowPolicy = "drop_oldest"
    limit: int = 64 * 1024
    heartbeat: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.rate <= MAX_RATE:
            raise ConfigError(f"rate must be at most {MAX_RATE:g} events/s, not {self.rate:g}")
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ConfigError(
                f"size must be {MIN_SIZE} to {MAX_SIZE} bytes ({MAX_SIZE // 1024}K), "
                f"not {self.size}"
            )
        if self.rate * self.size > MAX_BYTES_PER_SECOND:
            raise ConfigError(
                f"rate x size must be at most {MAX_BYTES_PER_SECOND // 1024}K/s per feed, "
                f"not {self.rate * self.size / 1024:g}K/s"
            )
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not 1024 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be 1K to {MAX_LIMIT // 1024}K, not {self.limit}")
        if not 0.1 <= self.heartbeat <= 300:
            raise ConfigError(f"heartbeat must be 100ms to 300s, not {self.heartbeat:g}s")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FeedSpec:
        """Parse ``rate`` (whole events per second: ``20``, ``20/s``), ``size`` (``200``,
        ``1K``), ``policy``, ``limit`` (``64K``) and ``heartbeat`` (``15s``);
        :class:`~sluicegate.errors.ConfigError` names the bad one."""
        known = {"rate", "size", "policy", "limit", "heartbeat"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r}; /events takes {sorted(known)}")
        return cls(
            rate=parse_rate(query.get("rate", "1")),
            size=parse_size(query.get("size", "200")),
            policy=query.get("policy", "drop_oldest"),  # type: ignore[arg-type]
            limit=parse_size(query.get("limit", "64K")),
            heartbeat=parse_duration(query.get("heartbeat", "15s")),
        )

    @property
    def topic(self) -> str:
        """The topic of this feed: one per ``(rate, size)``."""
        return f"feed:{self.rate:g}:{self.size}"


class NumberedFeeds:
    """The feeds of one process, on one broadcast (memory, or Redis with ``url``)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.broadcast = Broadcast(
            ["feed"], backend=url, replay=REPLAY, max_event_size=MAX_SIZE + 256
        )
        self._publishers: dict[str, asyncio.Task[None]] = {}
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    async def stream(self, spec: FeedSpec) -> EventStream:
        """An :class:`EventStream` of the feed ``spec`` names; starts its publisher.

        Raises :class:`~sluicegate.errors.OverBudget` when :data:`MAX_FEEDS` run.
        """
        topic = spec.topic
        if topic not in self._publishers:
            if len(self._publishers) >= MAX_FEEDS:
                raise OverBudget(
                    f"{MAX_FEEDS} feeds run already; join one of them or try again later"
                )
            self.broadcast.add_topic(topic)
            self._publishers[topic] = asyncio.create_task(
                self._publish(spec), name=f"sluicegate-feed-{topic}"
            )
        feed = self.broadcast.feed(topic, policy=spec.policy, limit=spec.limit)
        return EventStream(feed, heartbeat=spec.heartbeat)

    async def _publish(self, spec: FeedSpec) -> None:
        topic, interval = spec.topic, 1.0 / spec.rate
        broadcast = self.broadcast
        coordination: Coordination = broadcast.backend  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        leader, renew_at, idle_since = False, 0.0, None
        due = loop.time()
        try:
            while True:
                now = loop.time()
                if broadcast.subscribers(topic):
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since > IDLE_GRACE:
                    return
                try:
                    if now >= renew_at:
                        leader = await coordination.lease(topic, self._owner, LEASE_TTL)
                        renew_at = now + LEASE_TTL / 3
                    if leader:
                        n = await coordination.count(topic)
                        await broadcast.publish(topic, stamped(n, spec.size), event="tick")
                except BackendUnavailable as exc:
                    log.warning("feed %s: %s", topic, exc)
                    leader, renew_at = False, 0.0
                    await asyncio.sleep(0.5)
                    due = loop.time()
                    continue
                due += interval
                if due < loop.time() - 1.0:
                    due = loop.time()  # fell behind (a stalled loop): no burst to catch up
                await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            self._publishers.pop(topic, None)

    async def aclose(self) -> None:
        """Stop the publishers; end every stream with a ``shutdown`` event."""
        tasks = list(self._publishers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(BackendUnavailable):
            await self.broadcast.aclose()
