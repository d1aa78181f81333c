"""The pump driven by scripted fakes of a server's ``send``, without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sluicegate import StreamResponse

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}


class EmptyAwaitable:
    """Done at once, and its iterator has no ``send()``: granian's ``PyEmptyAwaitable``."""

    def __await__(self) -> Iterator[None]:
        return self

    def __iter__(self) -> Iterator[None]:
        return self

    def __next__(self) -> None:
        raise StopIteration


class FutureAwaitable:
    """Waits for a future, through an iterator with no ``send()`` or ``throw()``."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def __await__(self) -> Iterator[Any]:
        return self

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.future.done():
            raise StopIteration
        self.future._asyncio_future_blocking = True
        return self.future


class Client:
    """Records what was sent; leaves (``http.disconnect``) when told to."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    @property
    def body(self) -> bytes:
        return b"".join(bytes(m.get("body", b"")) for m in self.messages[1:])

    @property
    def endings(self) -> int:
        return sum(1 for m in self.messages[1:] if not m.get("more_body", False))

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def record(self, message: dict[str, Any]) -> None:
        if "body" in message:
            message = {**message, "body": bytes(message["body"])}
        self.messages.append(message)


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i % 256]) * size


async def test_a_send_whose_awaitable_is_not_a_coroutine_is_taken_at_once() -> None:
    client = Client()

    def send(message: dict[str, Any]) -> EmptyAwaitable:
        client.record(message)
        return EmptyAwaitable()

    await StreamResponse(chunks(100, 1024))(SCOPE, client.receive, send)
    assert client.body == b"".join(bytes([i]) * 1024 for i in range(100))
    assert client.endings == 1


async def test_a_send_whose_awaitable_is_not_a_coroutine_may_wait() -> None:
    client = Client()
    loop = asyncio.get_running_loop()

    def send(message: dict[str, Any]) -> EmptyAwaitable | FutureAwaitable:
        client.record(message)
        if message["type"] == "http.response.start":
            return EmptyAwaitable()
        future = loop.create_future()
        loop.call_later(0.001, future.set_result, None)
        return FutureAwaitable(future)

    await StreamResponse(chunks(1, 1 << 20))(SCOPE, client.receive, send)
    assert client.body == bytes(1 << 20)
    assert client.endings == 1


async def test_a_send_that_returns_at_once_after_a_disconnect_stops_the_producer() -> None:
    client = Client()
    made = 0
    closed = False

    async def endless() -> AsyncIterator[bytes]:
        nonlocal made, closed
        try:
            while True:
                made += 1
                yield b"x" * 65536
        finally:
            closed = True

    async def send(message: dict[str, Any]) -> None:
        # ASGI 2.3: after the client left, send() returns at once and drops the bytes.
        client.record(message)
        if len(client.messages) == 10:
            client.gone.set()

    await asyncio.wait_for(StreamResponse(endless())(SCOPE, client.receive, send), 10)
    assert closed
    # Message 10 let the client go; the chunk being made then, one more at most.
    assert made <= 9 + 2
    assert client.endings == 0
