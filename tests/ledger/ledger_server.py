"""A real server for the kill -9 tests: uvicorn serving StreamResponses recorded in a ledger.

Usage: ``python ledger_server.py PORT sqlite PATH`` or
``python ledger_server.py PORT redis URL PREFIX``; add ``--late`` to record the end after
the last byte (``commit_before_end=False``), the behaviour the tests show to be unsafe;
``--progress SECONDS`` sets how often progress is written (SQLite's ``progress_interval``;
Redis writes it with each heartbeat, every ``SECONDS``).

``/chunked/{n}`` streams ``n`` bytes from a generator in three parts (chunked encoding);
``/sized/{n}`` sends ``n`` bytes with ``Content-Length``; ``/slow/{n}`` streams ``n``
bytes in parts of 16 KiB, 50 ms apart. The bytes are :func:`body`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

PATTERN = bytes(range(256)) * 256


def body(n: int) -> bytes:
    """The ``n`` bytes both routes send (not all alike, so that a digest means something)."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def make_app(argv: list[str]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from sluicegate import StreamResponse
    from sluicegate.ledger import Ledger, SQLiteLedger

    late = "--late" in argv
    args = [a for a in argv if a != "--late"]
    every: float | None = None
    if "--progress" in args:
        at = args.index("--progress")
        every = float(args[at + 1])
        del args[at : at + 2]
    ledger: Ledger
    if args[0] == "sqlite":
        options = {} if every is None else {"progress_interval": every}
        ledger = SQLiteLedger(args[1], commit_before_end=not late, **options)
    else:
        from sluicegate.ledger.redis import RedisLedger

        beat = {} if every is None else {"heartbeat_timeout": 3 * every}
        ledger = RedisLedger(args[1], prefix=args[2], commit_before_end=not late, **beat)

    async def chunked(request: Request) -> StreamResponse:
        data = body(int(request.path_params["n"]))

        async def parts() -> AsyncIterator[bytes]:
            third = len(data) // 3
            for part in (data[:third], data[third : 2 * third], data[2 * third :]):
                yield part
                await asyncio.sleep(0)  # let it leave: the head goes out without a size

        return StreamResponse(parts(), ledger=ledger)

    async def sized(request: Request) -> StreamResponse:
        return StreamResponse(body(int(request.path_params["n"])), ledger=ledger)

    async def slow(request: Request) -> StreamResponse:
        data = body(int(request.path_params["n"]))

        async def parts() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 16384):
                yield data[i : i + 16384]
                await asyncio.sleep(0.05)

        return StreamResponse(parts(), ledger=ledger)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with ledger:
            yield

    return Starlette(
        routes=[
            Route("/chunked/{n:int}", chunked),
            Route("/sized/{n:int}", sized),
            Route("/slow/{n:int}", slow),
        ],
        lifespan=lifespan,
    )


if __name__ == "__main__":
    import uvicorn

    port = int(sys.argv[1])
    uvicorn.run(
        make_app(sys.argv[2:]),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        lifespan="on",
    )
