"""Live events: server-sent events with resume, broadcast to many subscribers.

::

    from sluicegate.events import Broadcast, EventStream

    broadcast = Broadcast(["news"])               # or backend="redis://127.0.0.1:6379/0"

    async def news(request):
        return EventStream(broadcast.feed("news", policy="drop_oldest"))

    await broadcast.publish("news", {"title": "hello"}, event="headline")

The pieces, each its own module:

* :mod:`~sluicegate.events.framing`: an event to its bytes (sans-IO).
* :mod:`~sluicegate.events.ids`: ``<int>-<int>`` ids and their order (sans-IO).
* :mod:`~sluicegate.events.stream`: :class:`EventStream`, the response.
* :mod:`~sluicegate.events.broadcast`: :class:`Broadcast`, topics and fan-out.
* :mod:`~sluicegate.events.subscription`: one subscriber: replay, live, the
  slow-subscriber policies (a state machine).
* :mod:`~sluicegate.events.backend`: the backend contract;
  :mod:`~sluicegate.events.memory` and :mod:`~sluicegate.events.redis` (imported on
  first use: redis-py is optional).
* :mod:`~sluicegate.events.lifecycle`: ending streams when the server shuts down.
* :mod:`~sluicegate.events.metrics`: counters the doctor reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluicegate.events.backend import Backend, Published, Replay, Resync
from sluicegate.events.broadcast import Broadcast, Feed
from sluicegate.events.errors import (
    BackendUnavailable,
    BadLastEventId,
    EventError,
    EventTooLarge,
    SlowSubscriber,
    UnknownTopic,
)
from sluicegate.events.framing import Event, comment, encode
from sluicegate.events.lifecycle import graceful_uvicorn, with_shutdown
from sluicegate.events.memory import MemoryBackend
from sluicegate.events.stream import EventStream, close_streams, open_streams
from sluicegate.events.subscription import FeedOptions, SlowPolicy, Subscription

if TYPE_CHECKING:
    from sluicegate.events.redis import RedisBackend

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BadLastEventId",
    "Broadcast",
    "Event",
    "EventError",
    "EventStream",
    "EventTooLarge",
    "Feed",
    "FeedOptions",
    "MemoryBackend",
    "Published",
    "RedisBackend",
    "Replay",
    "Resync",
    "SlowPolicy",
    "SlowSubscriber",
    "Subscription",
    "UnknownTopic",
    "close_streams",
    "comment",
    "encode",
    "graceful_uvicorn",
    "open_streams",
    "with_shutdown",
]


def __getattr__(name: str) -> Any:
    # The Redis backend's module is light, but keep it (and any future import of
    # redis-py at module level) off the import path of users who never touch it.
    if name == "RedisBackend":
        from sluicegate.events.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
