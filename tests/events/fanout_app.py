"""A plain ASGI app with one broadcast, for the fan-out tests on every server.

``/events``: an :class:`~sluicegate.events.EventStream` of topic ``t`` (``drop_oldest``,
64 KiB per subscriber: the defaults; no heartbeat). ``/publish?count=N&size=S``: publish ``N``
events of ``S`` bytes of data (each ``<n>:`` and padding), ten per millisecond at
most: a feed a fast reader keeps up with on every server (granian's ``send`` waits
for its own writer, so an unpaced burst overflows even a fast reader's buffer).
``/subscribers``: how many subscribers ``t`` has now.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

from sluicegate.events import Broadcast, EventStream

broadcast = Broadcast(["t"])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route ``/events``, ``/publish`` and ``/subscribers``."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/events":
        await EventStream(broadcast.feed("t"), heartbeat=None)(scope, receive, send)
    elif path == "/publish":
        q = {k: int(v[0]) for k, v in parse_qs(scope["query_string"].decode()).items()}
        for n in range(1, q["count"] + 1):
            head = f"{n}:".encode()
            await broadcast.publish("t", head + b"x" * (q["size"] - len(head)))
            if n % 10 == 0:
                await asyncio.sleep(0.001)
        await JSONResponse({"published": q["count"]})(scope, receive, send)
    elif path == "/subscribers":
        await JSONResponse({"subscribers": broadcast.subscribers("t")})(scope, receive, send)
