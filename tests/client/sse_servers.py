"""A numbered SSE feed for the SSE swarm tests: a plain ASGI app, deterministic numbering.

Event ``n`` (1..``count``) has id ``str(n)`` and data ``{"n": n, "published": time.time()}``,
so two servers running the same app are two workers of one feed: a subscriber that
resumes on the other with ``Last-Event-ID`` must get exactly what it missed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class NumberedFeed:
    """``count`` events, one every ``interval`` s, then the stream stays open (heartbeats).

    ``cut_after``: end each response after that many events (a server that drops
    subscribers). ``skip`` / ``repeat``: numbers to leave out / send twice.
    """

    count: int = 20
    interval: float = 0.01
    cut_after: int | None = None
    skip: frozenset[int] = frozenset()
    repeat: frozenset[int] = frozenset()
    heartbeat: float = 0.2
    size: int = 0
    last_event_ids: list[str | None] = field(default_factory=list)

    def _event(self, n: int) -> bytes:
        data = json.dumps({"n": n, "published": time.time(), "pad": "x" * self.size})
        return f"id: {n}\nevent: tick\ndata: {data}\n\n".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/events":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            return
        # Stop when the client leaves: uvicorn's send() does not say so, receive() does.
        stream = asyncio.create_task(self._stream(scope, send))
        while (await receive())["type"] != "http.disconnect":
            pass
        stream.cancel()

    async def _stream(self, scope: dict[str, Any], send: Any) -> None:
        headers = dict(scope["headers"])
        last = headers.get(b"last-event-id")
        self.last_event_ids.append(None if last is None else last.decode())
        start = int(last) + 1 if last is not None else 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 20\n\n", "more_body": True})
        sent = 0
        for n in range(start, self.count + 1):
            if self.cut_after is not None and sent >= self.cut_after:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await asyncio.sleep(self.interval)
            if n in self.skip:
                continue
            body = self._event(n) * (2 if n in self.repeat else 1)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            sent += 1
        while True:  # stay subscribed: heartbeats until the client leaves
            await asyncio.sleep(self.heartbeat)
            await send({"type": "http.response.body", "body": b": hb\n\n", "more_body": True})
