"""The contract every event backend keeps, and the plain values that cross it.

A backend stores each topic's events in order, gives each an id (``<int>-<int>``,
see :mod:`sluicegate.events.ids`), keeps the recent ones for replay, and hands every
event, once, to the :class:`~sluicegate.events.broadcast.Broadcast` of each process
that watches the topic (:meth:`Backend.watch`). Two ship:

* :class:`~sluicegate.events.memory.MemoryBackend`: one process, a ring buffer per topic.
* :class:`~sluicegate.events.redis.RedisBackend`: Redis Streams, any number of processes.

The broadcast does everything else (subscribers, policies, resume), so a new backend
is these five methods; ``tests/events/test_backend_contract.py`` is the suite it must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sluicegate.events.ids import Order

__all__ = ["Backend", "Coordination", "Deliver", "Fail", "Published", "Replay", "Resync"]


@dataclass(frozen=True, slots=True, eq=False)
class Published:
    """One stored event as subscribers get it: encoded once, shared by reference."""

    id: str
    order: Order
    #: what the ``latest`` policy keeps one of (the newest per key)
    key: str
    #: the whole event on the wire, ``id`` line included
    wire: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored events after an id, oldest first (at most the ``limit`` asked for)."""

    events: list[Published]
    #: the newest id the topic had when this was read
    head: str


@dataclass(frozen=True, slots=True)
class Resync:
    """The id is older than what the topic keeps (or from another log): events are lost."""

    #: the newest id the topic has: where a resynced client goes on from
    head: str
    reason: str


#: Called with each event of a watched topic, in order, once per process.
Deliver = Callable[[str, Published], None]
#: Called when a watched topic's feed broke (the backend went away).
Fail = Callable[[str, BaseException], None]


class Backend(Protocol):
    """Where a broadcast's events live. All methods run on the broadcast's event loop."""

    async def start(self, deliver: Deliver, fail: Fail) -> None:
        """Connect; afterwards deliver the events of watched topics to ``deliver``."""

    async def publish(self, topic: str, key: str, body: bytes) -> Published:
        """Store an event (``body``: encoded without its id); return it with its id.

        Raises :class:`~sluicegate.events.errors.BackendUnavailable` when the store
        cannot be reached; the event is then not published.
        """

    async def replay(self, topic: str, after: Order, limit: int) -> Replay | Resync:
        """Up to ``limit`` stored events after ``after``, or :class:`Resync` if some are gone."""

    async def watch(self, topic: str) -> None:
        """Start delivering ``topic``'s new events to this process (idempotent)."""

    async def aclose(self) -> None:
        """Stop watching and disconnect."""


class Coordination(Protocol):
    """What workers sharing a backend use to agree, e.g. on who publishes a feed.

    Both shipped backends have it; a :class:`Backend` need not.
    """

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``owner`` for ``ttl`` seconds.

        True while ``owner`` holds it; False while another owner's lease runs.
        """

    async def count(self, name: str) -> int:
        """Add one to the counter ``name`` (starting at 0) and return it."""
