"""Streams that end each way the engine knows, driven in-process, for the exporters' tests.

Each scenario returns when the response's ASGI call has returned, i.e. after the
engine's last word on the stream (its ``stream_ended``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sluicegate import Channel, GuardPolicy, Refusal, StreamResponse
from tests.asgi import Exchange, call

#: how long the "complete" stream waits between its two chunks
PAUSE = 0.2


@dataclass
class Ran:
    """What a scenario did, as the client saw it."""

    exchange: Exchange
    #: time.time_ns() of the response's last message, as the client got it
    last_message_ns: int
    first_message_ns: int


def _timed(ex: Exchange) -> tuple[Exchange, list[int]]:
    stamps: list[int] = []
    previous = ex.on_send

    async def on_send(message: dict[str, Any]) -> None:
        stamps.append(time.time_ns())
        if previous is not None:
            result = previous(message)
            if asyncio.iscoroutine(result):
                await result

    ex.on_send = on_send
    return ex, stamps


async def _run(app: Any, ex: Exchange | None = None, path: str = "/s") -> Ran:
    ex, stamps = _timed(ex or Exchange())
    with contextlib.suppress(RuntimeError):  # a failure after the head is re-raised
        await asyncio.wait_for(call(app, path=path, exchange=ex), 10)
    return Ran(ex, stamps[-1] if stamps else 0, stamps[0] if stamps else 0)


async def complete() -> Ran:
    """Two chunks, :data:`PAUSE` apart: the head goes out long before the last byte."""

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(PAUSE)
        yield b"b" * 1000

    return await _run(StreamResponse(body()), path="/complete")


async def _endless() -> AsyncIterator[bytes]:
    while True:
        yield b"x" * 10_000
        await asyncio.sleep(0.001)


async def client_gone() -> Ran:
    """The client leaves after three messages."""
    ex = Exchange()

    def on_send(message: dict[str, Any]) -> None:
        if len(ex.messages) >= 3:
            ex.disconnect.set()

    ex.on_send = on_send
    return await _run(StreamResponse(_endless()), ex, path="/gone")


async def failed_after_head() -> Ran:
    """The producer raises after its first chunk went out: the body is aborted."""

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(0.01)
        raise RuntimeError("the database went away")

    return await _run(StreamResponse(body()), path="/failed")


async def failed_before_head() -> Ran:
    """The producer raises before its first chunk: a real 500."""

    async def body() -> AsyncIterator[bytes]:
        raise RuntimeError("no rows")
        yield b""

    return await _run(StreamResponse(body()), path="/early")


async def guard_cut() -> Ran:
    """The client stops reading; the stall timeout cuts the stream."""
    ex = Exchange()

    async def on_send(message: dict[str, Any]) -> None:
        if len(ex.messages) > 3:
            await asyncio.sleep(3600)  # a client that stopped reading

    ex.on_send = on_send
    guard = GuardPolicy(stall_timeout=0.2)
    return await _run(StreamResponse(_endless(), guard=guard), ex, path="/cut")


async def dropped() -> Ran:
    """A leaky channel drops whole records for a client slower than the producer."""
    channel = Channel(limit=1000, policy="drop_oldest")
    gate = asyncio.Event()

    async def produce() -> None:
        for i in range(100):
            channel.put_nowait(b"%04d" % i * 25)
            await asyncio.sleep(0)
        channel.close()
        gate.set()

    ex = Exchange()

    async def slow_client(message: dict[str, Any]) -> None:
        await gate.wait()

    ex.on_send = slow_client
    task = asyncio.create_task(produce())
    ran = await _run(StreamResponse(channel), ex, path="/leaky")
    await task
    return ran


class _Full:
    def admit(self, scope: Any) -> Refusal:
        return Refusal("too many streams", retry_after=2)


async def refused() -> Ran:
    """The budgets refuse the stream: a 503 before anything is produced."""

    async def body() -> AsyncIterator[bytes]:
        yield b"never"

    return await _run(StreamResponse(body(), admission=_Full()), path="/refused")
