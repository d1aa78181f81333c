"""The example app ``sluicegate serve`` runs: the article's first examples, in Python.

``/hello``
    Two writes with a turn of the event loop between them: they leave as two
    chunks (try ``curl --trace - http://127.0.0.1:8080/hello``). ``/hello?turn=0``
    writes both in one turn, and they leave as one.
``/download?size=200M&chunk=1M``
    A generated download of ``size`` bytes, made in ``chunk``-sized pieces only as
    fast as the client takes them.
``/events?rate=5&size=200``
    A live feed of numbered server-sent events (see :mod:`sluicegate.events.feed`
    for the parameters and their caps); on Redis with ``sluicegate serve --broadcast``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError, OverBudget
from sluicegate.events.errors import BackendUnavailable
from sluicegate.events.feed import FeedSpec, NumberedFeeds
from sluicegate.http.problem import send_problem
from sluicegate.units import parse_size

# /events: made on first use, on the backend use_broadcast() chose.
_feeds: NumberedFeeds | None = None
_broadcast_url: str | None = None


def use_broadcast(url: str | None) -> None:
    """Put ``/events`` on Redis Streams at ``url`` (None: in memory), before serving."""
    global _broadcast_url, _feeds
    _broadcast_url, _feeds = url, None


def feeds() -> NumberedFeeds:
    """The ``/events`` feeds of this process."""
    global _feeds
    if _feeds is None:
        _feeds = NumberedFeeds(_broadcast_url)
    return _feeds


async def hello(turn: bool) -> AsyncIterator[str]:
    """Yield "Hello" and "World", letting the loop run between them when ``turn``."""
    yield "Hello"
    if turn:
        await asyncio.sleep(0)
    yield "World"


async def generated(size: int, chunk: int) -> AsyncIterator[bytes]:
    """``size`` bytes in pieces of ``chunk``, each made fresh (pages really touched)."""
    sent = 0
    i = 0
    while sent < size:
        n = min(chunk, size - sent)
        yield bytes([65 + i % 26]) * n
        sent += n
        i += 1


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The example ASGI application."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            try:
                if _broadcast_url is not None:
                    await feeds().broadcast.start()  # fail now if Redis is not there
            except BackendUnavailable as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        if _feeds is not None:
            await _feeds.aclose()
        await send({"type": "lifespan.shutdown.complete"})
        return
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    path = scope["path"]
    try:
        if path == "/hello":
            response = StreamResponse(hello(query.get("turn", "1") != "0"), media_type="text/plain")
        elif path == "/download":
            size = parse_size(query.get("size", "200M"))
            chunk = parse_size(query.get("chunk", "1M"))
            if chunk < 1:
                raise ConfigError("chunk must be at least 1 byte")
            response = StreamResponse(
                generated(size, chunk),
                content_length=size,
                headers={"content-disposition": 'attachment; filename="generated.bin"'},
            )
        elif path == "/events":
            response = await feeds().stream(FeedSpec.from_query(query))
        else:
            detail = f"no example at {path}; try /hello, /download or /events"
            await send_problem(send, 404, "Not Found", detail)
            return
    except ConfigError as exc:
        await send_problem(send, 400, "Bad Request", str(exc))
        return
    except OverBudget as exc:
        await send_problem(send, 503, "Service Unavailable", str(exc), {"retry-after": "5"})
        return
    await response(scope, receive, send)
