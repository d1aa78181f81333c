"""Fixtures for the client tests: real servers on 127.0.0.1, stopped after each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from client_servers import RawChunked, serve


@pytest.fixture
def server() -> Iterator[Callable[[Any], str]]:
    """``url = server(app)``: a uvicorn server for ``app``, stopped after the test."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serve(app))


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawChunked], Any]]:
    servers: list[asyncio.Server] = []

    async def start(spec: RawChunked) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: Content-Digest\r\nConnection: close\r\n\r\n"
            )
            for i in range(0, len(spec.body), 1000):
                piece = spec.body[i : i + 1000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            if not spec.cut:
                writer.write(b"0\r\n" + spec.trailer.encode() + b"\r\n\r\n")
            await writer.drain()
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()
