"""The example app ``sluicegate serve`` runs: the article's first examples, in Python.

``/hello``
    Two writes with a turn of the event loop between them: they leave as two
    chunks (try ``curl --trace - http://127.0.0.1:8080/hello``). ``/hello?turn=0``
    writes both in one turn, and they leave as one.
``/download?size=200M&chunk=1M``
    A generated download of ``size`` bytes, made in ``chunk``-sized pieces only as
    fast as the client takes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError
from sluicegate.http.problem import send_problem
from sluicegate.units import parse_size


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
            await send({"type": "lifespan.startup.complete"})
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
        else:
            detail = f"no example at {path}; try /hello or /download"
            await send_problem(send, 404, "Not Found", detail)
            return
    except ConfigError as exc:
        await send_problem(send, 400, "Bad Request", str(exc))
        return
    await response(scope, receive, send)
