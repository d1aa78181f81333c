"""A plain ASGI app (no framework wrapping ``send``) for the engine's tests on real servers.

``/big``: one 1 MiB chunk. ``/many``: 100 x 1 KiB yielded without an await.
``/endless?name=N``: 64 KiB chunks without an await until the client leaves; the
producer's ``finally`` writes when each chunk was made, when the server reported the
disconnect and when the producer was closed (``time.monotonic()``, one clock for
every process on Linux) to ``$SLUICEGATE_TEST_LOG_DIR/N.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sluicegate import StreamResponse

#: The body of ``/big``: every byte position distinct modulo 251, so a lost or
#: repeated slice shows.
BIG = bytes(i % 251 for i in range(1 << 20))
#: The chunks of ``/many``.
MANY = [bytes([i]) * 1024 for i in range(100)]
ENDLESS_CHUNK = 64 * 1024


async def _big() -> AsyncIterator[bytes]:
    yield BIG


async def _many() -> AsyncIterator[bytes]:
    for chunk in MANY:
        yield chunk


async def _endless(name: str, reported: list[float]) -> AsyncIterator[bytes]:
    made: list[float] = []
    chunk = b"e" * ENDLESS_CHUNK
    try:
        while len(made) < 100_000:  # 6.4 GB: a bound, never reached in a test
            made.append(time.monotonic())
            yield chunk
    finally:
        record = {"made": made, "reported": reported, "closed": time.monotonic()}
        path = Path(os.environ["SLUICEGATE_TEST_LOG_DIR"]) / f"{name}.json"
        path.write_text(json.dumps(record))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route to the three producers above."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    reported: list[float] = []

    async def noting_receive() -> Any:
        message = await receive()
        if message["type"] == "http.disconnect":
            reported.append(time.monotonic())
        return message

    if path == "/big":
        body: AsyncIterator[bytes] = _big()
    elif path == "/many":
        body = _many()
    else:
        name = parse_qs(scope["query_string"].decode())["name"][0]
        body = _endless(name, reported)
    await StreamResponse(body)(scope, noting_receive, send)
