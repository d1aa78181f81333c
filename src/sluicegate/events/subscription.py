"""One subscriber of one topic: its channel, its place in the topic, its slow-reader policy.

A subscription is a small state machine (:class:`State`, :data:`TRANSITIONS`):

``NEW``
    Registered with the feed, not yet live: a client without ``Last-Event-ID`` goes
    ``LIVE`` at once, one that resumes goes ``CATCHING_UP`` once the first replay
    page is read (offered events are noted meanwhile, as below).
``CATCHING_UP``
    Replaying stored events after the client's ``Last-Event-ID``, page by page, each
    put only when the subscriber's channel has room (a resuming client is paced by
    its own reading, never the publisher). Live events offered meanwhile are *not*
    queued; only the newest offered id is noted. When a replay page comes back short
    and nothing newer than it has been offered, the subscription goes ``LIVE``: the
    events it still lacks are exactly those the feed will offer next, so there is no
    gap, and live events at or before the replayed id are skipped, so no duplicate.
``LIVE``
    Each offered event is queued at once or handled by the policy; :meth:`offer`
    never waits, so a slow subscriber never delays the publisher or anyone else.
``OVERFLOWED`` (``disconnect`` only)
    The channel was full. Queuing later events would leave a hole, so none are queued.
    If the channel gets room within ``disconnect_after`` seconds, the subscription
    catches up from the log (back to ``CATCHING_UP``); if not, it is cut with
    :class:`~sluicegate.events.errors.SlowSubscriber` and the client comes back with
    ``Last-Event-ID``. (Its :class:`~sluicegate.events.stream.EventStream` hangs up
    on a client that does not take even the queued events within another
    ``disconnect_after`` seconds.)
``CLOSED``
    Nothing more is queued.

The policies, when the subscriber's channel is full. ``latest`` and ``disconnect``
call it full at ``limit`` bytes (an event is queued while it holds less, so it may
go over by one event); ``drop_oldest`` is the channel's own leaky policy, which
keeps it within ``limit``:

``drop_oldest``
    The channel's leaky policy: the oldest queued events go. The subscriber sees gaps.
``latest``
    Events wait outside the channel, one per key (the newest replaces an older one of
    the same key), until there is room. For state that only matters in its latest
    form: a price per symbol, a progress bar per job.
``disconnect``
    No gap ever: the subscriber is paused, then caught up or cut (above).
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from sluicegate.engine.channel import Channel
from sluicegate.errors import ConfigError
from sluicegate.events.backend import Published, Replay, Resync
from sluicegate.events.errors import BackendUnavailable, SlowSubscriber
from sluicegate.events.framing import Event, encode
from sluicegate.events.ids import Order, format_id, parse_id
from sluicegate.events.metrics import COUNTERS

if TYPE_CHECKING:
    from sluicegate.events.broadcast import Broadcast

__all__ = [
    "DEFAULT_LIMIT",
    "POLICIES",
    "REPLAY_PAGE",
    "FeedOptions",
    "SlowPolicy",
    "State",
    "Subscription",
]

SlowPolicy: TypeAlias = Literal["drop_oldest", "latest", "disconnect"]
POLICIES: Final = ("drop_oldest", "latest", "disconnect")

#: Bytes of events one subscriber may have queued, unless told otherwise.
DEFAULT_LIMIT: Final = 64 * 1024
#: Stored events read per replay request.
REPLAY_PAGE: Final = 256


class State(enum.Enum):
    """Where a subscription is; see the module docstring."""

    NEW = "new"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    OVERFLOWED = "overflowed"
    CLOSED = "closed"


#: The legal moves; anything else raises.
TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    State.NEW: frozenset({State.LIVE, State.CATCHING_UP, State.CLOSED}),
    State.CATCHING_UP: frozenset({State.LIVE, State.CLOSED}),
    State.LIVE: frozenset({State.OVERFLOWED, State.CLOSED}),
    State.OVERFLOWED: frozenset({State.CATCHING_UP, State.CLOSED}),
    State.CLOSED: frozenset(),
}


_LIVE: Final = State.LIVE


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """How one subscriber is buffered.

    :param policy: ``drop_oldest``, ``latest`` or ``disconnect`` (module docstring).
    :param limit: bytes of events the subscriber's channel may hold.
    :param disconnect_after: seconds a ``disconnect`` subscriber may stay full.

    >>> FeedOptions(policy="latest", limit=1024).limit
    1024
    >>> FeedOptions(policy="wait")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sluicegate.errors.ConfigError: policy must be one of drop_oldest, latest, disconnect, not 'wait'
    """

    policy: SlowPolicy = "drop_oldest"
    limit: int = DEFAULT_LIMIT
    disconnect_after: float = 10.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ConfigError(f"limit must be a positive number of bytes, not {self.limit!r}")
        after = self.disconnect_after
        if (
            not isinstance(after, int | float)
            or isinstance(after, bool)
            or not math.isfinite(after)
            or after <= 0
        ):
            raise ConfigError(
                f"disconnect_after must be a positive number of seconds, not {after!r}"
            )

    def channel(self) -> Channel:
        """A fresh channel for one subscriber under these options.

        ``drop_oldest`` uses the channel's own leaky policy. The others decide before
        putting (an event is queued only while the channel is under its limit), so
        their channel never drops;
        ``wait`` is the policy that puts what it is given.
        """
        return Channel(self.limit, "drop_oldest" if self.policy == "drop_oldest" else "wait")


class Subscription:
    """One subscriber's feed from a :class:`~sluicegate.events.broadcast.Broadcast`.

    Made by :meth:`Broadcast.subscribe`; it writes events into ``channel``, which the
    subscriber's :class:`~sluicegate.events.stream.EventStream` sends.
    """

    __slots__ = (
        "_offered",
        "_pending",
        "_pending_bytes",
        "_put",
        "_task",
        "broadcast",
        "channel",
        "cursor",
        "on_cut",
        "options",
        "state",
        "topic",
    )

    def __init__(
        self, broadcast: Broadcast, topic: str, channel: Channel, options: FeedOptions
    ) -> None:
        self.broadcast = broadcast
        self.topic = topic
        self.channel = channel
        self.options = options
        self.state = State.NEW
        #: the last event queued (or, live, offered): live events up to it are skipped
        self.cursor: Order | None = None
        # The newest event offered while not live.
        self._offered: Order | None = None
        # ``latest``: events waiting for room, one per key, oldest first.
        self._pending: OrderedDict[str, Published] = OrderedDict()
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        #: called when the ``disconnect`` policy cuts this subscriber (its stream then
        #: makes sure the connection ends, see EventStream)
        self.on_cut: Callable[[], None] | None = None
        # The policy's put, chosen once: offer() runs once per event per subscriber.
        self._put: Callable[[Published], None] = (
            self._put_leaky
            if options.policy == "drop_oldest"
            else self._put_latest
            if options.policy == "latest"
            else self._put_or_overflow
        )

    # -- state --------------------------------------------------------------------

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self.state]:
            raise RuntimeError(f"subscription cannot go from {self.state.name} to {to.name}")
        self.state = to

    # -- the feed's side: never waits ------------------------------------------------

    def offer(self, event: Published) -> None:
        """Take one live event: queue it, or apply the policy. Never waits, never raises."""
        if self.state is _LIVE:
            cursor = self.cursor
            if cursor is not None and event.order <= cursor:
                return  # replayed already
            if not self.channel.closed:
                self._put(event)
        elif self.state is not State.CLOSED:
            offered = self._offered
            if offered is None or event.order > offered:
                self._offered = event.order

    def _put_leaky(self, event: Published) -> None:
        self.cursor = event.order
        dropped = self.channel.deliver(event.wire)
        if dropped:
            COUNTERS.dropped += dropped

    def _put_latest(self, event: Published) -> None:
        channel = self.channel
        self.cursor = event.order
        n = len(event.wire)
        if not self._pending and channel.buffered < channel.limit:
            channel.deliver(event.wire)
            return
        pending = self._pending
        old = pending.pop(event.key, None)
        if old is not None:
            self._pending_bytes -= len(old.wire)
            COUNTERS.replaced += 1
        pending[event.key] = event
        self._pending_bytes += n
        # Many keys can still outgrow the budget: then the oldest keys go.
        while self._pending_bytes > channel.limit and len(pending) > 1:
            _, gone = pending.popitem(last=False)
            self._pending_bytes -= len(gone.wire)
            COUNTERS.dropped += 1
        if self._task is None:
            self._task = _spawn(self._drain_latest())

    def _put_or_overflow(self, event: Published) -> None:
        channel = self.channel
        if channel.buffered < channel.limit:
            channel.deliver(event.wire)
            self.cursor = event.order
            return
        self._move(State.OVERFLOWED)
        self._offered = event.order
        self._task = _spawn(self._wait_or_cut())

    # -- tasks: they wait for the subscriber, never the publisher -----------------------

    async def _put_waiting(self, wire: bytes) -> bool:
        """Put once the channel has room; False if it was closed meanwhile.

        A ``disconnect`` subscriber that leaves no room for ``disconnect_after``
        seconds is cut here too (while it catches up).
        """
        channel = self.channel
        if channel.buffered >= channel.limit and not channel.closed:
            if self.options.policy == "disconnect":
                if not await self._room_within(self.options.disconnect_after):
                    return False
            else:
                while channel.buffered >= channel.limit and not channel.closed:
                    await channel.wait_room()
        if channel.closed:
            return False
        channel.deliver(wire)
        return True

    async def _room_within(self, seconds: float) -> bool:
        """Wait for room; cut the subscriber (and return False) if none comes in time."""
        channel = self.channel
        try:
            async with asyncio.timeout(seconds):
                while channel.buffered >= channel.limit and not channel.closed:
                    await channel.wait_room()
        except TimeoutError:
            COUNTERS.cut += 1
            self.close(SlowSubscriber(f"the subscriber's buffer stayed full for {seconds:g} s"))
            if self.on_cut is not None:
                self.on_cut()
            return False
        return not channel.closed

    async def _drain_latest(self) -> None:
        pending = self._pending
        while pending and self.state is State.LIVE:
            _, event = pending.popitem(last=False)
            self._pending_bytes -= len(event.wire)
            if not await self._put_waiting(event.wire):
                return
        self._task = None

    async def _wait_or_cut(self) -> None:
        if not await self._room_within(self.options.disconnect_after):
            return
        if self.state is State.OVERFLOWED:
            self._move(State.CATCHING_UP)
            await self.catch_up(None)

    async def catch_up(self, first: Replay | Resync | None) -> None:
        """Replay from :attr:`cursor` until caught up with the feed, then go ``LIVE``.

        ``first``: the first replay, already read (by :meth:`Broadcast.subscribe`, so
        that a backend failure becomes a 503 before the stream starts).
        """
        backend = self.broadcast.backend
        result = first
        try:
            while self.state is State.CATCHING_UP:
                if result is None:
                    assert self.cursor is not None
                    result = await backend.replay(self.topic, self.cursor, REPLAY_PAGE)
                if isinstance(result, Resync):
                    if not await self.resync(result):
                        return
                    result = None
                    continue
                page, result = result.events, None
                for event in page:
                    if not await self._put_waiting(event.wire):
                        return
                    self.cursor = event.order
                COUNTERS.replayed += len(page)
                offered = self._offered
                caught_up = offered is None or (self.cursor is not None and offered <= self.cursor)
                if len(page) < REPLAY_PAGE and caught_up:
                    self._move(State.LIVE)
        except Exception as exc:  # the backend went away mid-replay
            COUNTERS.backend_errors += 1
            self.close(BackendUnavailable(f"replay failed: {exc}"))
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def resync(self, result: Resync) -> bool:
        """Tell the client events were lost (a ``resync`` event) and go on from the head."""
        COUNTERS.resyncs += 1
        lost_after = format_id(self.cursor) if self.cursor is not None else None
        wire = encode(
            Event(
                {"reason": result.reason, "last_event_id": lost_after, "resume_from": result.head},
                event="resync",
                id=result.head,
            )
        )
        self.cursor = parse_id(result.head)
        return await self._put_waiting(wire)

    def go_live(self) -> None:
        """Start queuing live events (a client that does not resume)."""
        self._move(State.LIVE)

    def start_catch_up(self, after: Order, first: Replay | Resync | None = None) -> None:
        """Begin replaying after ``after`` (a resuming client); see :meth:`catch_up`."""
        self.cursor = after
        self._move(State.CATCHING_UP)
        self._task = _spawn(self.catch_up(first))

    # -- ending -------------------------------------------------------------------------

    def close(self, error: BaseException | None = None) -> None:
        """Stop: nothing more is queued; with ``error`` the stream ends with it in band.

        Safe to call more than once. The channel is closed only with an error: a clean
        end (shutdown) is the stream's to write.
        """
        if self.state is not State.CLOSED:
            self._move(State.CLOSED)
            self.broadcast._forget(self)
        task = self._task
        self._task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._pending.clear()
        if error is not None:
            self.channel.close(error)

    def __repr__(self) -> str:
        return f"<Subscription {self.topic!r} {self.state.name} {self.options.policy}>"


def _spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.create_task(work, name="sluicegate-subscription")
    task.add_done_callback(_consume)
    return task


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
