"""The demo's live feed: one publisher, many subscribers, and a policy for the slow ones.

Mounted by :mod:`sluicegate.demo.app` under ``/feed``:

``GET /feed/<policy>``
    Subscribe (``text/event-stream``); ``policy`` is one of :data:`FEED_POLICIES`.
``POST /feed/start?policy=P&rate=R&size=S&seconds=D``
    Publish ``R × D`` events of ``S`` bytes at ``R``/s to the subscribers of ``P``.
``GET /feed/stats``
    JSON: subscribers, events published (counted when their fan-out begins), the
    broadcast's counters (dropped, cut, replayed), how far the publisher fell behind.

Every event's data is :func:`~sluicegate.events.stamp.stamped` (its number and
publish time), so ``sluicegate swarm --sse`` counts what each subscriber got.

The three policies the demo compares, each with 64 KiB per subscriber:

``wait``
    Backpressure, as for a single download: one ``Channel(policy="wait")`` per
    subscriber, and the publisher awaits room in each in turn. Memory is bounded, but
    the slowest subscriber sets the pace for everyone. :class:`~sluicegate.events.Broadcast`
    does not offer it, for that reason; it is here to show why.
``drop_oldest``
    :class:`~sluicegate.events.Broadcast`'s leaky default: a slow subscriber loses its
    oldest queued events; nobody else notices.
``disconnect``
    The broadcast cuts a subscriber whose buffer stayed full for
    :data:`DISCONNECT_AFTER` seconds; it comes back with ``Last-Event-ID`` and replays
    what it missed from the log: no gap, but it falls further behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Final, cast

from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import Channel
from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ChannelClosed, ConfigError
from sluicegate.events import Broadcast, Event, EventStream, SlowPolicy, encode
from sluicegate.events.metrics import snapshot
from sluicegate.events.stamp import on_schedule, stamped
from sluicegate.http.problem import send_problem

__all__ = ["DISCONNECT_AFTER", "FEED_POLICIES", "LIMIT", "LiveFeed", "feed_app"]

FEED_POLICIES: Final = ("wait", "drop_oldest", "disconnect")
#: bytes of events each subscriber may have queued, whatever the policy
LIMIT: Final = 64 * 1024
#: seconds a ``disconnect`` subscriber may stay full before it is cut
DISCONNECT_AFTER: Final = 1.0
#: events the broadcast keeps for subscribers that resume
REPLAY: Final = 2000
#: bounds on what ``/feed/start`` accepts: a request never chooses the server's memory
MAX_RATE: Final = 1000.0
MAX_SIZE: Final = 16 * 1024
MAX_SECONDS: Final = 600.0


class LiveFeed:
    """The feed's state: the broadcast, the ``wait`` subscribers' channels, counters."""

    def __init__(self) -> None:
        self.broadcast = Broadcast(
            ["live"], limit=LIMIT, replay=REPLAY, disconnect_after=DISCONNECT_AFTER
        )
        self.waiting: dict[Channel, None] = {}
        self.policy: str | None = None
        self.published = 0
        self.planned = 0
        self.behind = 0.0
        self.started: float | None = None
        self.ended: float | None = None
        self.task: asyncio.Task[None] | None = None

    def subscribers(self, policy: str) -> int:
        """How many subscribers ``policy`` has now."""
        return len(self.waiting) if policy == "wait" else self.broadcast.subscribers("live")

    async def subscribe(self, policy: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one subscriber of ``policy`` until it leaves."""
        if policy != "wait":
            slow_policy = cast(SlowPolicy, policy)  # checked by the caller
            stream = EventStream(self.broadcast.feed("live", policy=slow_policy))
            await stream(scope, receive, send)
            return
        channel = Channel(LIMIT, "wait")
        self.waiting[channel] = None
        try:
            headers = {"cache-control": "no-cache"}
            response = StreamResponse(channel, media_type="text/event-stream", headers=headers)
            channel.put_nowait(b": open\n\n")
            await response(scope, receive, send)
        finally:
            self.waiting.pop(channel, None)

    async def run(self, policy: str, rate: float, count: int, size: int) -> None:
        """Publish ``count`` events at ``rate``/s, each ``size`` bytes, to ``policy``'s side."""
        self.policy, self.planned, self.published, self.behind = policy, count, 0, 0.0
        self.started, self.ended = time.time(), None
        try:
            async for k, late in on_schedule(rate, count):
                self.behind = max(self.behind, late)
                data = stamped(k + 1, size)
                # Counted when its fan-out begins: under wait, some subscribers have an
                # event while the publisher still waits to give it to the others.
                self.published += 1
                if policy == "wait":
                    await self._wait_publish(k + 1, data)
                else:
                    await self.broadcast.publish("live", data)
        finally:
            self.ended = time.time()

    async def _wait_publish(self, n: int, data: str) -> None:
        wire = encode(Event(data, id=str(n)))
        for channel in list(self.waiting):
            # A full channel suspends the publisher here: everyone waits for this one.
            with contextlib.suppress(ChannelClosed):
                await channel.put(wire)

    def stats(self) -> dict[str, Any]:
        """What ``/feed/stats`` answers."""
        counters = snapshot()
        return {
            "policy": self.policy,
            "subscribers": {p: self.subscribers(p) for p in FEED_POLICIES},
            "planned": self.planned,
            "published": self.published,
            "behind": round(self.behind, 3),
            "running": self.task is not None and not self.task.done(),
            "started": self.started,
            "ended": self.ended,
            "dropped": int(counters["dropped"]),
            "cut": int(counters["cut"]),
            "replayed": int(counters["replayed"]),
            "resyncs": int(counters["resyncs"]),
        }


def _start_params(query: dict[str, str]) -> tuple[str, float, int, int]:
    policy = query.get("policy", "")
    if policy not in FEED_POLICIES:
        raise ConfigError(f"policy must be one of {', '.join(FEED_POLICIES)}, not {policy!r}")
    try:
        rate = float(query.get("rate", "10"))
        size = int(query.get("size", "4096"))
        seconds = float(query.get("seconds", "5"))
    except ValueError:
        raise ConfigError("rate, size and seconds must be numbers") from None
    if not (0 < rate <= MAX_RATE and 0 <= size <= MAX_SIZE and 0 < seconds <= MAX_SECONDS):
        raise ConfigError(
            f"need 0 < rate <= {MAX_RATE:g}, 0 <= size <= {MAX_SIZE}, "
            f"0 < seconds <= {MAX_SECONDS:g}"
        )
    return policy, rate, max(1, round(rate * seconds)), size


async def _json(send: Send, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: the demo server's one feed
FEED = LiveFeed()


async def feed_app(
    scope: Scope, receive: Receive, send: Send, query: dict[str, str], feed: LiveFeed = FEED
) -> None:
    """Serve ``/feed/...`` (see the module docstring); ``query`` is the parsed query."""
    name = scope["path"].rstrip("/").removeprefix("/feed").strip("/")
    if name == "stats":
        await _json(send, 200, feed.stats())
    elif name == "start":
        if scope["method"] != "POST":
            await send_problem(send, 405, "Method Not Allowed", "POST to start the feed")
            return
        try:
            policy, rate, count, size = _start_params(query)
        except ConfigError as exc:
            await send_problem(send, 400, "Bad Request", str(exc))
            return
        if feed.task is not None and not feed.task.done():
            await send_problem(send, 409, "Conflict", "the feed is already publishing")
            return
        feed.task = asyncio.create_task(feed.run(policy, rate, count, size))
        await _json(send, 202, feed.stats())
    elif name in FEED_POLICIES:
        await feed.subscribe(name, scope, receive, send)
    else:
        detail = f"no feed at {scope['path']}; try /feed/{{{','.join(FEED_POLICIES)}}}"
        await send_problem(send, 404, "Not Found", detail)
