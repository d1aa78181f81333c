"""The SSE servers ``bench_sse.py`` compares, one ASGI app per variant, same load.

Each app serves:

``GET /events``                          the live feed (one subscriber per request)
``POST /publish?rate=R&count=C&size=S``  start publishing C events of S bytes at R/s
``GET /stats``                           JSON: subscribers, published, first/last number

The publisher runs in the server, on a schedule of absolute times (``t0 + k / rate``,
so a late tick does not delay the next ones), and every event's data is the JSON the
client reads (:func:`~sluicegate.events.stamp.stamped`): ``{"n": k, "published":
<time>, "pad": …}`` padded to ``size`` bytes.

Variants (``uvicorn benchmarks.sse_apps:<name>``):

``starlette_app``  sse-starlette's ``EventSourceResponse`` in the pattern its docs show
                   for broadcast: one unbounded ``asyncio.Queue`` per client, the
                   publisher puts every event in every queue.
``fastapi_app``    FastAPI's native SSE (``response_class=EventSourceResponse`` on a
                   generator path operation), with the same per-client queues: FastAPI
                   has no broadcast of its own.
``sluice_app``     sluicegate's :class:`~sluicegate.events.Broadcast` (in-memory backend,
                   ``drop_oldest``, 64 KiB per subscriber: the defaults) and
                   :class:`~sluicegate.events.EventStream`.
``sluice_redis_app``  the same on Redis Streams (``SLUICE_REDIS`` names the server):
                   several workers share the feed; publish on one, subscribe on any.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from sluicegate.events.stamp import on_schedule, stamped

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Feed:
    """The publisher and its counters; ``sink`` is the variant's publish-to-all."""

    def __init__(self) -> None:
        self.sink: Callable[[int, str], Awaitable[None] | None] = lambda n, p: None
        self.subscribers = 0
        #: overrides ``subscribers`` when the variant counts them itself
        self.count: Callable[[], int] | None = None
        self.published = 0
        self.first: int | None = None
        self.last: int | None = None
        self.next_n = 1
        self.running = False
        self.task: asyncio.Task[None] | None = None
        self.late = 0.0
        #: seconds each publish call took (the fan-out, for variants that deliver in it)
        self.fanout: list[float] = []

    async def run(self, rate: float, count: int, size: int) -> None:
        """Publish ``count`` events at ``rate``/s."""
        self.running = True
        try:
            async for _, late in on_schedule(rate, count):
                self.late = max(self.late, late)
                n = self.next_n
                self.next_n += 1
                began = time.perf_counter()
                result = self.sink(n, stamped(n, size))
                if result is not None:
                    await result
                self.fanout.append(time.perf_counter() - began)
                self.first = n if self.first is None else self.first
                self.last = n
                self.published += 1
        finally:
            self.running = False

    def stats(self) -> dict[str, Any]:
        """What ``/stats`` answers."""
        return {
            "subscribers": self.count() if self.count is not None else self.subscribers,
            "published": self.published,
            "first": self.first,
            "last": self.last,
            "running": self.running,
            "late": round(self.late, 6),
            "fanout": _spread(self.fanout),
            "pid": os.getpid(),
        }


def _spread(seconds: list[float]) -> dict[str, float] | None:
    """Median and maximum of ``seconds``, in ms (None before the first publish)."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return {
        "median_ms": round(ordered[len(ordered) // 2] * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
    }


async def _json(send: Any, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def control(feed: Feed, events: ASGI) -> ASGI:
    """Wrap the variant's ``/events`` app with ``/publish``, ``/stats`` and lifespan."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/events":
            await events(scope, receive, send)
        elif path == "/stats":
            await _json(send, 200, feed.stats())
        elif path == "/publish" and scope["method"] == "POST":
            q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
            try:
                rate, count, size = float(q["rate"]), int(q["count"]), int(q.get("size", 200))
            except (KeyError, ValueError):
                await _json(send, 400, {"error": "need rate, count (and size)"})
                return
            if feed.running or not (0 < rate <= 10_000 and 0 < count <= 10**7):
                await _json(send, 409, {"error": "already running or out of range"})
                return
            feed.task = asyncio.create_task(feed.run(rate, count, size))
            await _json(send, 202, feed.stats())
        else:
            await _json(send, 404, {"error": "not found"})

    return app


# -- the per-client-queue pattern (sse-starlette's docs; FastAPI has nothing else) -------


class Queues:
    """One unbounded ``asyncio.Queue`` per subscriber; publish puts into every one."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.queues: set[asyncio.Queue[tuple[int, str]]] = set()
        feed.sink = self.publish

    def publish(self, n: int, data: str) -> None:
        """Put event ``n`` in every subscriber's queue."""
        for q in self.queues:
            q.put_nowait((n, data))

    async def events(self) -> AsyncIterator[tuple[int, str]]:
        """One subscriber's events, from its own queue."""
        q: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.queues.add(q)
        self.feed.subscribers += 1
        try:
            while True:
                yield await q.get()
        finally:
            self.queues.discard(q)
            self.feed.subscribers -= 1


def _starlette() -> ASGI:
    from sse_starlette import EventSourceResponse

    feed = Feed()
    hub = Queues(feed)

    async def events(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def gen() -> AsyncIterator[dict[str, str]]:
            async for n, data in hub.events():
                yield {"id": str(n), "data": data}

        await EventSourceResponse(gen())(scope, receive, send)

    return control(feed, events)


def _fastapi() -> ASGI:
    from fastapi import FastAPI
    from fastapi.sse import EventSourceResponse, ServerSentEvent

    feed = Feed()
    hub = Queues(feed)
    api = FastAPI()

    @api.get("/events", response_class=EventSourceResponse)
    async def events() -> AsyncIterator[ServerSentEvent]:
        async for n, data in hub.events():
            # raw_data: the same bytes as the other variants (data= would JSON-quote it)
            yield ServerSentEvent(raw_data=data, id=str(n))

    return control(feed, api)


def _sluice(backend: str | None = None) -> ASGI:
    from sluicegate.events import Broadcast, EventStream

    feed = Feed()
    broadcast = Broadcast(["bench"], backend=backend)
    feed.count = lambda: broadcast.subscribers("bench")

    async def sink(n: int, data: str) -> None:
        await broadcast.publish("bench", data)

    feed.sink = sink

    async def events(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await EventStream(broadcast.feed("bench"))(scope, receive, send)

    return control(feed, events)


def _sluice_redis() -> ASGI:
    return _sluice(os.environ["SLUICE_REDIS"])


def __getattr__(name: str) -> ASGI:
    # Built on first use, so importing one variant does not import the others.
    builders = {
        "starlette_app": _starlette,
        "fastapi_app": _fastapi,
        "sluice_app": _sluice,
        "sluice_redis_app": _sluice_redis,
    }
    if name in builders:
        app = builders[name]()
        globals()[name] = app
        return app
    raise AttributeError(name)
