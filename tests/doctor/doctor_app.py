"""A small ASGI app with one endpoint per problem the doctor diagnoses.

Run it under uvicorn (``python -m uvicorn tests.doctor.doctor_app:app --port 0``):

* ``/`` answers at once;
* ``/block?ms=N`` blocks the event loop for N ms with ``time.sleep`` (event-loop-blocked);
* ``/big?mib=N`` streams N MiB in 64 KiB chunks, awaiting each send (slow readers
  fill the kernel send queue: kernel-send-queues);
* ``/unbounded?mib=N`` streams N MiB through an unbounded queue its producer fills
  at once: bytes the client has not taken pile up in RSS (backpressure-ignored);
* ``/hoard?mib=N`` keeps N MiB alive forever (memory-growth / memory-not-released);
* ``/leak`` starts a task that never ends (task-leak);
* ``/linger`` registers a sluicegate stream whose client "left" while its producer
  keeps running (lingering-producers).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

from sluicegate.engine import metrics

_hoard: list[bytearray] = []
_tasks: set[asyncio.Task[None]] = set()
_CHUNK = b"x" * 65536


def _arg(scope: dict[str, Any], name: str, default: int) -> int:
    values = parse_qs(scope.get("query_string", b"").decode()).get(name)
    return int(values[0]) if values else default


async def _text(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _unbounded(send: Any, chunks: int) -> None:
    # The classic mistake: the producer never waits for the consumer.
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def produce() -> None:
        for _ in range(chunks):
            await queue.put(b"u" * len(_CHUNK))
        await queue.put(None)

    producer = asyncio.get_running_loop().create_task(produce())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while (chunk := await queue.get()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        producer.cancel()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in _tasks:
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/block":
        time.sleep(_arg(scope, "ms", 200) / 1000)  # noqa: ASYNC251 - blocking is the point
    elif path == "/big":
        chunks = _arg(scope, "mib", 8) * 16
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % (chunks * len(_CHUNK)))],
            }
        )
        for i in range(chunks):
            await send({"type": "http.response.body", "body": _CHUNK, "more_body": i < chunks - 1})
        return
    elif path == "/unbounded":
        await _unbounded(send, _arg(scope, "mib", 8) * 16)
        return
    elif path == "/hoard":
        _hoard.append(bytearray(_arg(scope, "mib", 8) << 20))
    elif path == "/leak":
        task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        _tasks.add(task)
    elif path == "/linger":
        m = metrics.REGISTRY.open("/linger")
        m.bytes_sent = 100
        metrics.REGISTRY.close(m, "client_gone")  # the producer is never stopped
    await _text(send, b"ok\n")
