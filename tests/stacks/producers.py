"""The producers every framework in the matrix serves, and what they report.

Run inside the server process. Each framework mounts the same four endpoints under
its own prefix (``/<framework>/...``):

* ``body``: :data:`BODY_CHUNKS` chunks whose bytes the client can check (intact);
* ``endless/<token>``: 64 KiB chunks until closed; records how many it made and
  when its ``finally`` ran (a disconnect closes the producer);
* ``fail``: two 100 kB chunks, then an exception (a failure after the head);
* ``big``: :data:`BIG_CHUNKS` fresh chunks of :data:`BIG_CHUNK` bytes (memory in chunks).

``/_state/<token>`` (plain ASGI, outside every framework) returns an endless
producer's record as JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

BODY_CHUNKS = 16
BODY_CHUNK = 64 * 1024 + 7  # not a power of two: coalescing and slicing both show
# "COUNTxMiB", e.g. 10x8 for the full-size run (python -m tests.stacks.compat --full)
_BIG = os.environ.get("SLUICEGATE_MATRIX_BIG", "5x4").split("x")
BIG_CHUNKS = int(_BIG[0])
BIG_CHUNK = int(_BIG[1]) * 1024 * 1024
ENDLESS_CHUNK = 64 * 1024
FAIL_CHUNK = 100_000

#: token -> {"made": chunks made, "made_at": time of the last, "closed_at": time or None}
TRACK: dict[str, dict[str, Any]] = {}


def body_chunk(i: int) -> bytes:
    """The ``i``-th chunk of ``body``."""
    return bytes([(i * 37 + 11) % 256]) * BODY_CHUNK


def body_digest() -> str:
    """SHA-256 of the whole ``body``, as the client computes it."""
    h = hashlib.sha256()
    for i in range(BODY_CHUNKS):
        h.update(body_chunk(i))
    return h.hexdigest()


async def body() -> AsyncIterator[bytes]:
    """The body the intact check compares."""
    for i in range(BODY_CHUNKS):
        yield body_chunk(i)
        if i % 4 == 3:
            await asyncio.sleep(0)


async def endless(token: str) -> AsyncIterator[bytes]:
    """Chunks until the stream closes us; the record shows when it did."""
    record = TRACK[token] = {"made": 0, "made_at": None, "closed_at": None}
    try:
        while True:
            chunk = b"e" * ENDLESS_CHUNK
            record["made"] += 1
            record["made_at"] = time.time()
            yield chunk
            await asyncio.sleep(0.001)
    finally:
        record["closed_at"] = time.time()


async def slow(token: str) -> AsyncIterator[bytes]:
    """One small chunk, then a long wait between chunks: the client leaves while the
    producer waits, so only a watch on the connection can notice."""
    record = TRACK[token] = {"made": 0, "made_at": None, "closed_at": None}
    try:
        while True:
            record["made"] += 1
            record["made_at"] = time.time()
            yield b"s" * 1024
            await asyncio.sleep(30)
    finally:
        record["closed_at"] = time.time()


async def failing() -> AsyncIterator[bytes]:
    """Fails after the head and two chunks."""
    for i in range(3):
        if i == 2:
            raise RuntimeError("the disk went away (a test failure, on purpose)")
        yield b"f" * FAIL_CHUNK
        await asyncio.sleep(0.02)


async def big() -> AsyncIterator[bytes]:
    """Large chunks made one at a time: peak memory divided by BIG_CHUNK is chunks held."""
    for i in range(BIG_CHUNKS):
        # Filled, so every page is touched and counted in RSS.
        yield bytes([65 + i]) * BIG_CHUNK


async def bare_big(send: Any) -> None:
    """``big`` as a bare ``send()`` loop, one message per chunk: what a server does
    with large messages, without sluicegate (for the known-limits notes)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(BIG_CHUNKS):
        await send({"type": "http.response.body", "body": bytes([65 + i]) * BIG_CHUNK,
                    "more_body": True})  # fmt: skip
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def state(token: str) -> bytes:
    """The JSON record of an endless producer (``{}`` before it starts)."""
    return json.dumps(TRACK.get(token, {})).encode()
