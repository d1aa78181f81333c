"""``EventStream``: a ``text/event-stream`` response, from a producer or a broadcast feed.

::

    async def ticks():
        for n in itertools.count():
            yield Event({"n": n}, event="tick", id=f"0-{n}")
            await asyncio.sleep(1)

    return EventStream(ticks())                                 # one producer
    return EventStream(broadcast.feed("prices"))                # a broadcast topic
    return EventStream(lambda last_id: ticks_after(last_id))    # resume your own way

It is a :class:`~sluicegate.StreamResponse` over one byte-bounded channel, so the
engine's guarantees hold: bounded memory, the slow-reader guard, clean cancellation.
What it adds:

* **Framing** (:mod:`sluicegate.events.framing`): a producer may yield
  :class:`~sluicegate.events.framing.Event`\\ s, or bare ``str``/``bytes``/JSON data.
* **Headers**: ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` (nginx
  would otherwise buffer the stream).
* **An opening block** goes out at once (a ``retry`` hint, or an empty comment), so
  the client sees the ``200`` and ``EventSource.onopen`` fires before the first event.
* **Heartbeats**: after ``heartbeat`` seconds with nothing queued, a comment
  (``:``, three bytes). It goes through the same channel and pump as events, so the
  slow-reader guard judges it like any other bytes.
* **Resume**: with a feed, the request's ``Last-Event-ID`` is handed to
  :meth:`~sluicegate.events.broadcast.Broadcast.subscribe` (replay, then live). With a
  callable, it is called with that id.
* **Errors before the stream starts** are problem+json: a malformed
  ``Last-Event-ID`` 400, an unknown topic 404, the backend down 503 with
  ``Retry-After``. After it started, a failure is an in-band ``error`` event
  (``on_error="inband"``, :mod:`sluicegate.engine.failure`) and the stream ends;
  ``EventSource`` then reconnects with ``Last-Event-ID``.
* **Shutdown**: :meth:`EventStream.close`, :func:`close_streams` (every open stream of
  this process) and :meth:`Broadcast.aclose` queue a final ``shutdown`` event with a
  ``retry`` hint, then end the body cleanly.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any, Final, TypeAlias

from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import Channel
from sluicegate.engine.failure import OnError
from sluicegate.engine.response import GuardFactory, StreamResponse, defaults
from sluicegate.engine.sources import ChannelSource
from sluicegate.errors import ConfigError
from sluicegate.events.broadcast import Broadcast, Feed
from sluicegate.events.errors import BackendUnavailable, BadLastEventId, UnknownTopic
from sluicegate.events.framing import Event, comment, encode, retry_hint
from sluicegate.events.subscription import Subscription
from sluicegate.http.problem import send_problem

__all__ = ["DEFAULT_HEARTBEAT", "EventStream", "close_streams", "open_streams"]

#: Seconds of silence before a heartbeat comment, unless told otherwise. Under the
#: idle timeouts of common proxies (nginx 60 s, AWS ALB 60 s).
DEFAULT_HEARTBEAT: Final = 15.0

#: What a producer may yield: an Event, or the data of one.
EventLike: TypeAlias = Any
#: A producer made from the client's ``Last-Event-ID`` (None when it sent none).
Resumable: TypeAlias = Callable[[str | None], AsyncIterable[EventLike]]

_HEARTBEAT: Final = comment()
# Retry-After of a 503 when the backend is down.
_BACKEND_RETRY: Final = 2

_UNSET: Any = object()
# Every stream running in this process, for close_streams().
_OPEN: weakref.WeakSet[EventStream] = weakref.WeakSet()


class _Feeder(ChannelSource):
    """The stream's channel as the response's source, and what fills it.

    The response closes this source when it ends for any reason (done, failed, client
    gone); that stops the producer or the subscription and the heartbeat.
    """

    def __init__(self, channel: Channel, stream: EventStream) -> None:
        super().__init__(channel)
        self.stream = stream

    async def aclose(self) -> None:
        await self.stream._stop_feeding()
        await super().aclose()


class EventStream(StreamResponse):
    """A ``text/event-stream`` response; see the module docstring.

    :param content: an async iterable of events (:class:`Event`, or ``str``/``bytes``/
        JSON data), a :class:`~sluicegate.events.broadcast.Feed`
        (``broadcast.feed(topic)``), or a callable taking the client's
        ``Last-Event-ID`` (or None) and returning such an iterable.
    :param heartbeat: seconds of silence before a heartbeat comment; None: never.
    :param retry: milliseconds for the client's reconnection delay, sent first.
    :param high_water_mark: bytes buffered for a producer (a feed uses its ``limit``).
    :param on_error: see :class:`~sluicegate.StreamResponse`; ``"inband"`` here.

    Other parameters are :class:`~sluicegate.StreamResponse`'s.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[EventLike] | Feed | Resumable,
        *,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        retry: int | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        high_water_mark: int | None = None,
        guard: GuardFactory | None = _UNSET,
        on_error: OnError = "inband",
    ) -> None:
        if heartbeat is not None and (
            not isinstance(heartbeat, int | float) or isinstance(heartbeat, bool) or heartbeat <= 0
        ):
            raise ConfigError(
                f"heartbeat must be a positive number of seconds or None, not {heartbeat!r}"
            )
        if isinstance(content, Feed):
            channel = content.options.channel()
        elif isinstance(content, AsyncIterable) or callable(content):
            hwm = defaults.high_water_mark if high_water_mark is None else high_water_mark
            channel = Channel(hwm, "wait")
        else:
            raise ConfigError(
                "EventStream takes an async iterable of events, a broadcast feed or a "
                f"callable, not {type(content).__name__}"
            )
        self.content = content
        self.heartbeat = heartbeat
        self.retry = retry
        #: the request's ``Last-Event-ID`` (None when it had none), once running
        self.last_event_id: str | None = None
        #: the subscription, when streaming a feed
        self.subscription: Subscription | None = None
        opening = retry_hint(retry) if retry is not None else comment()
        all_headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        all_headers.update(headers or {})
        # The guard is passed on only when given: left out, StreamResponse uses
        # sluicegate.defaults.guard.
        extra: dict[str, Any] = {} if guard is _UNSET else {"guard": guard}
        super().__init__(
            _Feeder(channel, self),
            status_code=status_code,
            headers=all_headers,
            background=background,
            high_water_mark=channel.limit,
            on_error=on_error,
            # An endless stream is not a transfer with an end to record.
            ledger=None,
            **extra,
        )
        self.channel = channel
        self._opening = opening
        self._producer: asyncio.Task[None] | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._beat_mark = 0
        # The task serving the request, and whether we cancelled it (a cut).
        self._request: asyncio.Task[Any] | None = None
        self._cutting = False

    @property
    def broadcast(self) -> Broadcast | None:
        """The broadcast this stream is fed by, if any."""
        return self.content.broadcast if isinstance(self.content, Feed) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Subscribe or start the producer, then stream; bad requests get problem+json."""
        if scope["type"] != "http":
            raise ConfigError(f"EventStream serves HTTP, not {scope['type']!r}")
        self.last_event_id = _last_event_id(scope)
        try:
            await self._start_feeding()
        except BadLastEventId as exc:
            await send_problem(send, 400, "Bad Request", str(exc))
            return
        except UnknownTopic as exc:
            await send_problem(send, 404, "Not Found", str(exc))
            return
        except BackendUnavailable as exc:
            await send_problem(
                send,
                503,
                "Service Unavailable",
                str(exc),
                headers={"retry-after": str(_BACKEND_RETRY)},
            )
            return
        _OPEN.add(self)
        self._request = asyncio.current_task()
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            request = self._request
            if not self._cutting or request is None or request.uncancel() > 0:
                raise  # cancelled by someone else (the server shutting down)
            # Our own cut: the response ends incomplete and the server closes the
            # connection.
        finally:
            self._request = None
            _OPEN.discard(self)
            await self._stop_feeding()

    # -- feeding ----------------------------------------------------------------------

    async def _start_feeding(self) -> None:
        channel = self.channel
        if channel.closed:
            return  # closed before it ran: send what close() queued, and end
        channel.put_nowait(self._opening)
        content = self.content
        if isinstance(content, Feed):
            self.subscription = await content.broadcast.subscribe(
                content.topic, channel, content.options, self.last_event_id
            )
            self.subscription.on_cut = self._cut_soon
        else:
            events = content if isinstance(content, AsyncIterable) else content(self.last_event_id)
            self._producer = asyncio.create_task(
                self._produce(events), name="sluicegate-event-producer"
            )
        if self.heartbeat is not None:
            self._beat_mark = channel.bytes_in
            self._beat = asyncio.get_running_loop().call_later(self.heartbeat, self._heartbeat)

    async def _produce(self, events: AsyncIterable[EventLike]) -> None:
        channel = self.channel
        iterator = aiter(events)
        try:
            async for item in iterator:
                wire = encode(item if isinstance(item, Event) else Event(item))
                while channel.buffered >= channel.limit and not channel.closed:
                    await channel.wait_room()
                if channel.closed:
                    return
                channel.deliver(wire)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The response ends with an in-band error event (on_error="inband").
            channel.close(exc)
            return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        channel.close()

    def _cut_soon(self) -> None:
        """The ``disconnect`` policy cut the subscriber: its stream ends with the events
        it had queued and an ``error`` event, if the client takes them within
        ``disconnect_after`` seconds; if not, the connection is cut there and then."""
        assert isinstance(self.content, Feed)
        grace = self.content.options.disconnect_after
        asyncio.get_running_loop().call_later(grace, self._cut_now)

    def _cut_now(self) -> None:
        request = self._request
        if request is not None and not request.done():
            self._cutting = True
            request.cancel()

    def _heartbeat(self) -> None:
        channel = self.channel
        if channel.closed or self.heartbeat is None:
            return
        if channel.bytes_in == self._beat_mark and not channel.queued:
            channel.put_nowait(_HEARTBEAT)
        self._beat_mark = channel.bytes_in
        self._beat = asyncio.get_running_loop().call_later(self.heartbeat, self._heartbeat)

    async def _stop_feeding(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self.subscription is not None:
            self.subscription.close()
        task, self._producer = self._producer, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- shutdown -----------------------------------------------------------------------

    def close(self, final: Event | None = None, *, retry: int = 1000) -> None:
        """End the stream cleanly: stop feeding, queue ``final`` (default: a ``shutdown``
        event with a ``retry`` hint between ``retry`` and ``2 × retry`` ms), end the body.

        The events already queued go first. Safe to call more than once, and from
        outside the request (another task, a shutdown hook).
        """
        channel = self.channel
        if channel.closed:
            return
        if self.subscription is not None:
            self.subscription.close()
        if self._producer is not None:
            self._producer.cancel()
        if final is None:
            # Spread the reconnections: a restart must not bring every client back
            # in the same millisecond.
            hint = retry + random.randrange(retry + 1) if retry > 0 else 0
            final = Event({"reason": "the server is shutting down"}, event="shutdown", retry=hint)
        channel.put_nowait(encode(final))
        channel.close()


def open_streams() -> list[EventStream]:
    """The event streams running in this process now."""
    return list(_OPEN)


def close_streams(which: Callable[[EventStream], bool] | None = None, *, retry: int = 1000) -> int:
    """Close every open event stream (or those ``which`` picks), as :meth:`EventStream.close`.

    Returns how many were closed. Call it when the server starts shutting down, before
    it waits for connections to finish (see :mod:`sluicegate.events.lifecycle`).
    """
    closed = 0
    for stream in list(_OPEN):
        if (which is None or which(stream)) and not stream.channel.closed:
            stream.close(retry=retry)
            closed += 1
    return closed


def _last_event_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"last-event-id":
            text = bytes(value).decode("latin-1").strip()
            return text or None
    return None
