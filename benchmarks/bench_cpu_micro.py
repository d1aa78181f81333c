"""Framework CPU per message, without a server: ``python benchmarks/bench_cpu_micro.py``.

:mod:`benchmarks.bench_cpu` measures whole servers, kernel and all; what sluicegate
itself adds per ``http.response.body`` message is a small part of that and drowns in
the machine's noise. This runs each response in-process against an ASGI ``send``
that takes every message at once (a client faster than the server, as on loopback)
and reports CPU microseconds per produced chunk: the pure Python cost of getting a
chunk from an async generator to ``send()``. Same variants as bench_cpu, minus Node.

``--rows N`` measures tiny rows instead: sluicegate's CPU per 50-byte row against the
generator alone (the floor) and against the least any coalescing loop written in
Python can do (the ceiling), which bounds what a pure-Python engine can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.responses import StreamingResponse

from sluicegate import StreamResponse

SCOPE = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}


async def _chunks(payload: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield payload


class _Server:
    """An ASGI ``send`` that accepts at once and counts, and a ``receive`` that waits."""

    def __init__(self) -> None:
        self.messages = 0

    async def send(self, message: dict[str, Any]) -> None:
        self.messages += 1

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


async def _respond(variant: str, payload: bytes, count: int, server: _Server) -> None:
    body = _chunks(payload, count)
    if variant == "starlette":
        await StreamingResponse(body)(SCOPE, server.receive, server.send)
    elif variant == "sluice":
        await StreamResponse(body)(SCOPE, server.receive, server.send)
    else:
        send = server.send
        await send({"type": "http.response.start", "status": 200, "headers": []})
        async for piece in body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def measure(variant: str, chunk: int, count: int) -> tuple[float, int]:
    """(CPU µs per chunk, messages sent) for one response of ``count`` chunks."""
    payload = b"\x01" * chunk
    await _respond(variant, payload, 100, _Server())  # warm up
    server = _Server()
    t0 = time.process_time()
    await _respond(variant, payload, count, server)
    return (time.process_time() - t0) / count * 1e6, server.messages


ROW = b"2026-11-25T08:00:00Z,customer-000000,order-00000000,42.00\n"[:50]


async def _rows(count: int) -> AsyncIterator[bytes]:
    row = ROW
    for _ in range(count):
        yield row


async def _rows_sluice(count: int) -> None:
    server = _Server()
    await StreamResponse(_rows(count))(SCOPE, server.receive, server.send)


async def _rows_floor(count: int) -> None:
    """Iterating the generator and nothing else: no pump can do less per row."""
    async for _ in _rows(count):
        pass


async def _rows_ceiling(count: int) -> None:
    """The least a coalescing loop written in Python can do per row: the row joins a
    local ``bytearray`` under a local byte count, with no call, no attribute and no
    budget, message or turn; a full one is dropped as if sent."""
    tail, room = bytearray(), 64 * 1024
    async for chunk in _rows(count):
        if type(chunk) is bytes:
            n = len(chunk)
            if n < 2048 and n < room:
                tail += chunk
                room -= n
                continue
        tail, room = bytearray(chunk), 64 * 1024 - len(chunk)


ROW_VARIANTS = {"sluice": _rows_sluice, "floor": _rows_floor, "ceiling": _rows_ceiling}


async def measure_rows(variant: str, count: int) -> float:
    """CPU ns per 50-byte row for ``variant`` (see :data:`ROW_VARIANTS`)."""
    run = ROW_VARIANTS[variant]
    await run(1000)  # warm up
    t0 = time.process_time()
    await run(count)
    return (time.process_time() - t0) / count * 1e9


def rows_main(runs: int, count: int) -> None:
    """Print CPU ns per row: sluicegate, the generator alone, the Python ceiling."""
    import uvloop

    found: dict[str, list[float]] = {v: [] for v in ROW_VARIANTS}
    for _ in range(runs):
        for variant in ROW_VARIANTS:
            found[variant].append(uvloop.run(measure_rows(variant, count)))
    print(f"{count:,} rows of 50 B from an async generator, in process: CPU ns per row")
    for variant, values in found.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {variant:8} median {sorted(values)[len(values) // 2]:5.0f}  ({shown})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per variant")
    ap.add_argument("--mib", type=int, default=4096, help="MiB per response")
    ap.add_argument(
        "--rows",
        type=int,
        default=0,
        metavar="N",
        help="instead: N rows of 50 B; sluicegate against the generator alone and the "
        "least a Python coalescing loop can do",
    )
    args = ap.parse_args(argv)
    if args.rows:
        rows_main(args.runs, args.rows)
        return 0
    import uvloop

    for chunk in (64 * 1024, 1024 * 1024):
        count = args.mib * 1024 * 1024 // chunk
        runs: dict[str, list[float]] = {"bare": [], "starlette": [], "sluice": []}
        messages: dict[str, int] = {}
        for _ in range(args.runs):
            for variant in runs:
                us, messages[variant] = uvloop.run(measure(variant, chunk, count))
                runs[variant].append(us)
        print(f"{chunk // 1024} KiB chunks, {count:,} per response: CPU µs per chunk")
        for variant, values in runs.items():
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(
                f"  {variant:10} median {sorted(values)[len(values) // 2]:6.2f}  ({shown}; "
                f"{messages[variant]:,} messages)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
