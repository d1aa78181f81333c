"""The in-memory backend: one process, a ring buffer per topic as the replay log.

The default for a single worker. Each topic keeps its last ``replay`` events (a
``deque`` with ``maxlen``: appending drops the oldest, O(1)); memory per topic is
bounded by ``replay`` times the broadcast's ``max_event_size``. Publishing delivers at
once, on the publisher's turn of the event loop: there is no reader task.

Ids are ``<epoch>-<n>``: ``epoch`` is fixed when the backend is made, so after a
restart a client's old id is recognised as another log's and answered with a resync
rather than matched against new events that happen to have the same number.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Final

from sluicegate.errors import ConfigError
from sluicegate.events.backend import Deliver, Fail, Published, Replay, Resync
from sluicegate.events.framing import with_id
from sluicegate.events.ids import Order, format_id

__all__ = ["DEFAULT_REPLAY", "MemoryBackend"]

#: Events kept per topic for replay, unless told otherwise.
DEFAULT_REPLAY: Final = 1000

_EPOCHS = itertools.count()


class _Topic:
    __slots__ = ("log", "n")

    def __init__(self, replay: int) -> None:
        self.log: deque[Published] = deque(maxlen=replay)
        self.n = 0


class MemoryBackend:
    """Events in this process's memory; replay from the last ``replay`` events per topic."""

    def __init__(self, *, replay: int = DEFAULT_REPLAY) -> None:
        if not isinstance(replay, int) or isinstance(replay, bool) or replay < 0:
            raise ConfigError(f"replay must be a number of events >= 0, not {replay!r}")
        self.replay_size = replay
        # Milliseconds since 1970, times 1000, plus a counter: distinct for every
        # backend made in this process, and almost surely across restarts.
        self.epoch = int(time.time() * 1000) * 1000 + next(_EPOCHS) % 1000
        self._topics: dict[str, _Topic] = {}
        self._deliver: Deliver | None = None
        self._watched: set[str] = set()
        self._counters: dict[str, int] = {}

    async def start(self, deliver: Deliver, fail: Fail) -> None:
        """Remember where to deliver; nothing to connect to."""
        self._deliver = deliver

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(self.replay_size)
        return topic

    async def publish(self, topic: str, key: str, body: bytes) -> Published:
        """Append to the topic's ring and deliver now."""
        t = self._topic(topic)
        t.n += 1
        order = (self.epoch, t.n)
        event_id = format_id(order)
        published = Published(event_id, order, key, with_id(event_id, body))
        if self.replay_size:
            t.log.append(published)
        if self._deliver is not None and topic in self._watched:
            self._deliver(topic, published)
        return published

    async def replay(self, topic: str, after: Order, limit: int) -> Replay | Resync:
        """The kept events after ``after``; :class:`Resync` if it is from another log or lost."""
        t = self._topic(topic)
        head = format_id((self.epoch, t.n))
        epoch, n = after
        if after != (0, 0) and epoch != self.epoch:
            return Resync(head, "the id is from another event log (the server restarted)")
        if n > t.n:
            return Resync(head, "the id is newer than any event of this topic")
        if n >= t.n:
            return Replay([], head)
        oldest = t.n - len(t.log) + 1  # the n of t.log[0]
        if n + 1 < oldest:
            return Resync(head, "the events after this id are no longer kept")
        start = n + 1 - oldest
        return Replay(list(itertools.islice(t.log, start, start + limit)), head)

    async def watch(self, topic: str) -> None:
        """Deliver ``topic``'s events from now on (publishing delivers: no reader)."""
        self._watched.add(topic)

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        """One process: the lease is always its own."""
        return True

    async def count(self, name: str) -> int:
        """Add one to a counter of this process."""
        n = self._counters[name] = self._counters.get(name, 0) + 1
        return n

    async def aclose(self) -> None:
        """Stop delivering."""
        self._deliver = None
