"""Framework CPU per message, without a server: ``python benchmarks/bench_cpu_micro.py``.

:mod:`benchmarks.bench_cpu` measures whole servers, kernel and all; what sluicegate
itself adds per ``http.response.body`` message is a small part of that and drowns in
the machine's noise. This runs each response in-process against an ASGI ``send``
that takes every message at once (a client faster than the server, as on loopback)
and reports CPU microseconds per produced chunk: the pure Python cost of getting a
chunk from an async generator to ``send()``. Same variants as bench_cpu, minus Node.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per variant")
    ap.add_argument("--mib", type=int, default=4096, help="MiB per response")
    args = ap.parse_args(argv)
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
