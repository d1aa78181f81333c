"""``Broadcast``: publish an event once, deliver it to every subscriber of its topic.

::

    broadcast = Broadcast(["prices"])                      # in memory, one process
    broadcast = Broadcast(["prices"], backend="redis://127.0.0.1:6379/0")  # many

    await broadcast.publish("prices", {"sym": "ACME", "px": 12.5}, event="tick", key="ACME")

    async def prices(request):                             # a Starlette/FastAPI route
        return EventStream(broadcast.feed("prices", policy="latest"))

**Once.** An event is encoded once, in the publishing process (and, on Redis, once
more per process that receives it, with its id in front); every subscriber's channel
holds a reference to those same bytes.

**Never waits for a subscriber.** Delivery is a loop of :meth:`Subscription.offer`
calls, each of which queues the event or applies the subscriber's policy at once
(see :mod:`sluicegate.events.subscription`). A frozen subscriber costs its own
``limit`` bytes and nothing else: not the publisher's time, nor another subscriber's.

**Topics are declared.** A client names the topic (in a URL, say); an undeclared one
is :class:`~sluicegate.events.errors.UnknownTopic` (a 404 from
:class:`~sluicegate.events.stream.EventStream`), so no request can make the server
allocate a log. Subscribe and unsubscribe are dict insertions and deletions: O(1).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sluicegate.engine.channel import Channel
from sluicegate.errors import ConfigError
from sluicegate.events.backend import Backend, Published
from sluicegate.events.errors import (
    BackendUnavailable,
    EventTooLarge,
    UnknownTopic,
)
from sluicegate.events.framing import encode_body
from sluicegate.events.ids import parse_id
from sluicegate.events.memory import DEFAULT_REPLAY, MemoryBackend
from sluicegate.events.metrics import COUNTERS
from sluicegate.events.subscription import (
    DEFAULT_LIMIT,
    REPLAY_PAGE,
    FeedOptions,
    SlowPolicy,
    State,
    Subscription,
)

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "Broadcast", "Feed"]

#: The largest encoded event a broadcast accepts, unless told otherwise.
DEFAULT_MAX_EVENT_SIZE: Final = 64 * 1024
# Room for the "id: <20 digits>-<20 digits>\n" line put in front later.
_ID_LINE: Final = 48


@dataclass(frozen=True, slots=True)
class Feed:
    """What an :class:`~sluicegate.events.stream.EventStream` subscribes to when it runs.

    Made by :meth:`Broadcast.feed`. It is only a description: the subscription (and
    its replay, from the request's ``Last-Event-ID``) starts when the response does.
    """

    broadcast: Broadcast
    topic: str
    options: FeedOptions


class Broadcast:
    """Topics of events, each delivered to all its subscribers.

    :param topics: the topics this broadcast carries.
    :param backend: ``None`` for :class:`~sluicegate.events.memory.MemoryBackend`,
        a ``redis://`` URL for :class:`~sluicegate.events.redis.RedisBackend`, or
        any :class:`~sluicegate.events.backend.Backend`.
    :param replay: events kept per topic for clients that resume (memory and
        Redis ``MAXLEN ~``).
    :param max_event_size: the largest encoded event :meth:`publish` accepts
        (:class:`~sluicegate.events.errors.EventTooLarge` above it).
    :param limit, policy, disconnect_after: each subscriber's defaults; see
        :class:`~sluicegate.events.subscription.FeedOptions`.
    """

    def __init__(
        self,
        topics: Iterable[str] = ("events",),
        *,
        backend: Backend | str | None = None,
        replay: int = DEFAULT_REPLAY,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        limit: int = DEFAULT_LIMIT,
        policy: SlowPolicy = "drop_oldest",
        disconnect_after: float = 10.0,
    ) -> None:
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise ConfigError(f"topics must be non-empty strings, not {names!r}")
        if not isinstance(max_event_size, int) or max_event_size < 64:
            raise ConfigError(f"max_event_size must be at least 64 bytes, not {max_event_size!r}")
        self.topics = frozenset(names)
        self.max_event_size = max_event_size
        self.defaults = FeedOptions(policy=policy, limit=limit, disconnect_after=disconnect_after)
        if backend is None:
            backend = MemoryBackend(replay=replay)
        elif isinstance(backend, str):
            from sluicegate.events.redis import RedisBackend

            backend = RedisBackend(backend, replay=replay)
        self.backend: Backend = backend
        self._subscribers: dict[str, dict[Subscription, None]] = {t: {} for t in names}
        self._started: asyncio.Future[None] | None = None
        self._closed = False
        self._fanning_out = False
        self._held_back: deque[tuple[str, Published]] = deque()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the backend (done by the first publish or subscribe if not called)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self.backend.start(self._deliver, self._fail)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: the caller gets it below
                self._started = None
                raise
            self._started.set_result(None)
        elif not self._started.done():
            await asyncio.shield(self._started)

    async def aclose(self, *, retry: int = 1000) -> None:
        """Shut down: every open stream on this broadcast gets a final ``shutdown`` event
        with a ``retry`` hint (``retry`` to ``2 × retry`` ms, spread so that clients do
        not all come back at once) and ends cleanly; then the backend disconnects.
        """
        from sluicegate.events.stream import close_streams

        self._closed = True
        close_streams(lambda s: s.broadcast is self, retry=retry)
        for subs in self._subscribers.values():
            for sub in list(subs):
                sub.close()
        await self.backend.aclose()

    async def __aenter__(self) -> Broadcast:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- publishing -----------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        data: Any = "",
        *,
        event: str | None = None,
        key: str | None = None,
        retry: int | None = None,
    ) -> str:
        """Publish one event; return its id.

        ``data`` is ``str``, UTF-8 ``bytes`` or JSON-serialisable. ``key`` (default: the
        event type) is what the ``latest`` policy keeps one of. Raises
        :class:`~sluicegate.events.errors.UnknownTopic`,
        :class:`~sluicegate.events.errors.EventTooLarge`,
        :class:`~sluicegate.events.errors.EventError` (bad fields) or
        :class:`~sluicegate.events.errors.BackendUnavailable`; then nothing is published.
        """
        self._check_topic(topic)
        if self._closed:
            raise BackendUnavailable("the broadcast is closed")
        body = encode_body(data, event=event, retry=retry)
        if len(body) + _ID_LINE > self.max_event_size:
            raise EventTooLarge(
                f"the event is {len(body) + _ID_LINE} bytes encoded; "
                f"this broadcast takes at most {self.max_event_size}"
            )
        await self.start()
        published = await self.backend.publish(topic, key or event or "message", body)
        COUNTERS.published += 1
        return published.id

    # -- subscribing ----------------------------------------------------------------

    def feed(
        self,
        topic: str,
        *,
        policy: SlowPolicy | None = None,
        limit: int | None = None,
        disconnect_after: float | None = None,
    ) -> Feed:
        """A feed of ``topic`` for an :class:`~sluicegate.events.stream.EventStream`.

        Options left out take the broadcast's defaults. The topic is checked when the
        stream runs (an unknown one is a 404 there).
        """
        d = self.defaults
        options = FeedOptions(
            policy=d.policy if policy is None else policy,
            limit=d.limit if limit is None else limit,
            disconnect_after=d.disconnect_after if disconnect_after is None else disconnect_after,
        )
        return Feed(self, topic, options)

    async def subscribe(
        self,
        topic: str,
        channel: Channel,
        options: FeedOptions | None = None,
        last_event_id: str | None = None,
    ) -> Subscription:
        """Start feeding ``topic``'s events into ``channel``.

        With ``last_event_id`` the stored events after it come first, then live ones,
        with no gap and no duplicate (or a ``resync`` event when they are no longer
        kept). Raises :class:`~sluicegate.events.errors.UnknownTopic`,
        :class:`~sluicegate.events.errors.BadLastEventId` or
        :class:`~sluicegate.events.errors.BackendUnavailable` before anything is queued.
        """
        self._check_topic(topic)
        after = parse_id(last_event_id) if last_event_id else None
        if self._closed:
            raise BackendUnavailable("the broadcast is shutting down")
        await self.start()
        await self.backend.watch(topic)
        sub = Subscription(self, topic, channel, options or self.defaults)
        if after is None:
            sub.go_live()
        # Registered before the replay is read: whatever is published from now on is
        # offered to it, which is what makes the hand-over from replay to live gap-free.
        self._subscribers[topic][sub] = None
        COUNTERS.subscribers += 1
        COUNTERS.subscribed += 1
        if after is None:
            return sub
        try:
            first = await self.backend.replay(topic, after, REPLAY_PAGE)
        except BaseException:
            sub.close()
            raise
        if sub.state is State.CLOSED:
            # The feed broke (or the broadcast closed) while the replay was read.
            raise BackendUnavailable("the event feed broke while the replay was read")
        sub.start_catch_up(after, first)
        return sub

    def add_topic(self, topic: str) -> None:
        """Carry ``topic`` from now on (idempotent). Declare topics from code you
        control: a client must never be able to make one."""
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"a topic must be a non-empty string, not {topic!r}")
        if topic not in self.topics:
            self.topics = self.topics | {topic}
            self._subscribers[topic] = {}

    def subscribers(self, topic: str) -> int:
        """How many subscribers ``topic`` has in this process."""
        self._check_topic(topic)
        return len(self._subscribers[topic])

    # -- the backend's side ---------------------------------------------------------

    def _deliver(self, topic: str, event: Published) -> None:
        if self._fanning_out:
            # Published from inside a send of the fan-out under way (a send wrapper
            # that publishes): it goes out once that one has reached everyone, or the
            # subscribers still to come would get it first and skip the earlier event.
            self._held_back.append((topic, event))
            return
        self._fanning_out = True
        try:
            self._fan_out(topic, event)
            while self._held_back:
                self._fan_out(*self._held_back.popleft())
        finally:
            self._fanning_out = False
            self._held_back.clear()

    def _fan_out(self, topic: str, event: Published) -> None:
        subs = self._subscribers.get(topic)
        if subs:
            # A snapshot: a send may subscribe or unsubscribe someone meanwhile.
            for sub in tuple(subs):
                sub.offer(event)

    def _fail(self, topic: str, error: BaseException) -> None:
        subs = self._subscribers.get(topic)
        if not subs:
            return
        failure = BackendUnavailable(f"the event feed broke: {error}")
        for sub in list(subs):
            if sub.state is not State.CLOSED:
                COUNTERS.backend_errors += 1
                sub.close(failure)

    def _forget(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.topic)
        if subs is not None and sub in subs:
            del subs[sub]
            COUNTERS.subscribers -= 1

    def _check_topic(self, topic: str) -> None:
        if topic not in self.topics:
            shown = topic if len(topic) <= 64 else topic[:64] + "..."
            raise UnknownTopic(f"no topic {shown!r} here")

    def __repr__(self) -> str:
        return f"<Broadcast {sorted(self.topics)} on {type(self.backend).__name__}>"
