"""An app whose producer fails mid-body, for servers run as subprocesses in tests.

``/chunked`` streams 3 x 100 kB with no length; ``/sized`` promises 300 kB with
``Content-Length``; both fail after the first 200 kB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sluicegate import StreamResponse


async def failing() -> AsyncIterator[bytes]:
    for i in range(3):
        if i == 2:
            raise RuntimeError("the disk went away")
        yield bytes([65 + i]) * 100_000
        await asyncio.sleep(0.05)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 300_000 if scope["path"] == "/sized" else None
    await StreamResponse(failing(), content_length=size)(scope, receive, send)
