"""In-process ASGI harness: drive an app with recorded messages, no socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exchange:
    """What an app sent, and hooks to play the client."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    on_send: Callable[[dict[str, Any]], Any] | None = None

    @property
    def start(self) -> dict[str, Any]:
        return self.messages[0]

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.start["headers"]}

    @property
    def bodies(self) -> list[bytes]:
        return [bytes(m["body"]) for m in self.messages[1:] if m.get("body")]

    @property
    def body(self) -> bytes:
        return b"".join(self.bodies)

    @property
    def complete(self) -> bool:
        last = self.messages[-1] if len(self.messages) > 1 else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


async def call(
    app: Any,
    method: str = "GET",
    path: str = "/",
    exchange: Exchange | None = None,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Exchange:
    """Run ``app`` to the end; the client 'disconnects' when ``exchange.disconnect`` is set."""
    ex = exchange or Exchange()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers or [],
        "extensions": extensions or {},
    }
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await ex.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if "body" in message:
            message = {**message, "body": bytes(message["body"])}
        ex.messages.append(message)
        if ex.on_send is not None:
            result = ex.on_send(message)
            if asyncio.iscoroutine(result):
                await result

    await app(scope, receive, send)
    return ex
