"""The servers the benchmarks compare, one ASGI app each, picked by path.

``/bare``       a hand-written ASGI ``send()`` loop: the floor nobody can beat
``/starlette``  Starlette's ``StreamingResponse``
``/sluice``     sluicegate's ``StreamResponse``

Query parameters: ``turn`` (``/bare`` only: let the loop turn after every message),
``kind`` (``bytes`` chunks of ``chunk`` bytes, ``async-rows`` or
``sync-rows`` of about 50 bytes), ``count`` (how many), ``rate`` (producer bytes/s,
0 for as fast as possible); for ``/sluice`` also ``hwm`` (its high-water mark, 64 KiB
unless given) and ``msg`` (its ``max_message``, sluicegate's default unless given).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import StreamingResponse

from sluicegate import StreamResponse, defaults
from sluicegate.engine.pump import BURST_MESSAGE

# These apps run on uvicorn, whose buffer is counted in bytes: let messages grow while
# the client keeps up, as `sluicegate serve` does (see Defaults.burst_message).
defaults.burst_message = BURST_MESSAGE

ROW = b"2026-11-25T08:00:00Z,customer-000000,order-00000000,42.00\n"[:50]


def _params(scope: dict[str, Any]) -> dict[str, str]:
    qs = parse_qs(scope.get("query_string", b"").decode())
    return {k: v[0] for k, v in qs.items()}


async def async_chunks(chunk: int, count: int, rate: float) -> AsyncIterator[bytes]:
    # Fresh, non-zero memory per chunk so the pages are really touched, as the
    # article's 20 MB chunks are.
    interval = chunk / rate if rate else 0.0
    for i in range(count):
        if interval:
            await asyncio.sleep(interval)
            yield bytes([1 + i % 250]) * chunk
        else:
            yield PAYLOADS.setdefault(chunk, b"\x01" * chunk)


PAYLOADS: dict[int, bytes] = {}


async def async_rows(count: int) -> AsyncIterator[bytes]:
    row = ROW
    for _ in range(count):
        yield row


def sync_rows(count: int) -> Iterator[bytes]:
    row = ROW
    for _ in range(count):
        yield row


def body(p: dict[str, str]) -> tuple[Any, bool]:
    kind = p.get("kind", "bytes")
    count = int(p.get("count", "1000"))
    if kind == "async-rows":
        return async_rows(count), True
    if kind == "sync-rows":
        return sync_rows(count), False
    return async_chunks(int(p.get("chunk", "65536")), count, float(p.get("rate", "0"))), True


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    p = _params(scope)
    content, is_async = body(p)
    path = scope["path"]
    if path == "/bare":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if is_async and p.get("turn"):
            # A turn of the loop after every message, as sluicegate's pump takes one.
            async for piece in content:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                await asyncio.sleep(0)
        elif is_async:
            async for piece in content:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        else:
            for piece in content:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/starlette":
        await StreamingResponse(content)(scope, receive, send)
    elif path == "/sluice":
        hwm = int(p.get("hwm", str(64 * 1024)))
        # max_message only when asked for: left unset, sluicegate picks its own
        # message sizes (which may grow while the client keeps up).
        extra = {"max_message": int(p["msg"])} if "msg" in p else {}
        await StreamResponse(content, high_water_mark=hwm, **extra)(scope, receive, send)
    elif path == "/idle":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


_ = time
