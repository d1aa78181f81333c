"""The example app ``sluicegate serve`` runs: the article's first examples, in Python.

``/hello``
    Two writes with a turn of the event loop between them: they leave as two
    chunks (try ``curl --trace - http://127.0.0.1:8080/hello``). ``/hello?turn=0``
    writes both in one turn, and they leave as one.
``/download?size=200M&chunk=1M``
    A generated download of ``size`` bytes, made in ``chunk``-sized pieces only as
    fast as the client takes them. ``size`` is at most :data:`MAX_DOWNLOAD` (16 GiB)
    and ``chunk`` at most :data:`MAX_CHUNK` (4 MiB); above them the answer is a 400.
    The server, not the client, decides how much memory a request takes: each chunk
    is allocated, so an uncapped ``chunk=512M`` would cost 512 MiB per request.
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
from sluicegate.units import format_size, parse_size

#: Largest ``size`` of ``/download``: bytes cost no memory here, only time and bandwidth.
MAX_DOWNLOAD = 16 << 30
#: Largest ``chunk`` of ``/download``: each chunk is allocated, so this bounds the
#: memory one request can ask for (about two chunks: the one made, the one sending).
MAX_CHUNK = 4 << 20

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


def _bounded(name: str, text: str, low: int, high: int) -> int:
    value = parse_size(text)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} bytes to {format_size(high)}, not {text!r}")
    return value


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
    # Blank values kept: "size=" is a bad size, not a request for the default.
    raw_query = scope.get("query_string", b"").decode("latin-1")
    query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    path = scope["path"]
    try:
        if path == "/hello":
            response = StreamResponse(hello(query.get("turn", "1") != "0"), media_type="text/plain")
        elif path == "/download":
            size = _bounded("size", query.get("size", "200M"), 0, MAX_DOWNLOAD)
            chunk = _bounded("chunk", query.get("chunk", "1M"), 1, MAX_CHUNK)
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
