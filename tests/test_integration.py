"""StreamResponse on a real uvicorn, with clients that really read slowly or leave."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sluicegate import PullSource, StreamResponse
from tests.servers import (
    read_headers,
    request,
    running,
    server_side_fd,
    unread_bytes,
    unsent_bytes,
)

MiB = 1024 * 1024
HWM = 64 * 1024


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_bytes_held_stay_within_the_mark_plus_one_chunk_with_20mb_chunks(http: str) -> None:
    chunk_size, chunks = 20 * MiB, 4
    produced = 0

    async def big() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(chunks):
            data = bytes([i + 1]) * chunk_size
            produced += len(data)
            yield data

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await StreamResponse(big(), high_water_mark=HWM)(scope, receive, send)

    worst = 0
    with running(app, http=http) as port:
        sock = request(port, "/", rcvbuf=64 * 1024)
        head, first = read_headers(sock)
        assert b" 200 " in head.split(b"\r\n")[0]
        fd = server_side_fd(sock)
        read = len(first)
        buf = bytearray(256 * 1024)
        deadline = time.monotonic() + 60
        # Read at about 40 MB/s in 256 KiB steps, sampling what userspace holds:
        # produced - read - in the kernel on either side = held by the server process.
        sampling = True
        while time.monotonic() < deadline:
            if sampling:
                try:
                    held = produced - read - unsent_bytes(fd) - unread_bytes(sock)
                    worst = max(worst, held)
                except OSError:  # the server finished and closed its socket
                    sampling = False
            n = sock.recv_into(buf)
            if not n:
                break
            read += n
            time.sleep(n / (40 * MiB))
        sock.close()
    # Chunked framing adds a few bytes per message to what is read.
    assert read >= chunks * chunk_size
    # One producer chunk, the mark, and uvicorn's transport (its 64 KiB high-water
    # mark plus the one message it accepts past it); a little slack for framing.
    assert worst <= chunk_size + HWM + 2 * 64 * 1024 + 4096, worst


class Tracker:
    def __init__(self) -> None:
        self.made = 0
        self.made_at_cut = -1
        self.cleaned = threading.Event()
        self.cleaned_at = 0.0

    def made_one(self) -> None:
        self.made += 1

    def clean(self) -> None:
        self.cleaned_at = time.monotonic()
        self.cleaned.set()


def make_content(kind: str, t: Tracker) -> Any:
    block = b"q" * 200_000

    async def agen() -> AsyncIterator[bytes]:
        try:
            while True:
                t.made_one()
                yield block
                await asyncio.sleep(0.02)
        finally:
            t.clean()

    def sgen() -> Iterator[bytes]:
        try:
            while True:
                t.made_one()
                yield block
                time.sleep(0.02)
        finally:
            t.clean()

    class Src(PullSource):
        async def _read(self, size: int) -> None:
            await asyncio.sleep(0.02)
            t.made_one()
            self.push(block)

        def destroy(self) -> None:
            t.clean()

    return {"async": agen, "sync": sgen, "pull": Src}[kind]()


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("kind", ["async", "sync", "pull"])
def test_a_client_that_leaves_gets_its_producer_closed(kind: str, how: str) -> None:
    t = Tracker()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await StreamResponse(make_content(kind, t))(scope, receive, send)

    with running(app) as port:
        sock = request(port, "/", rcvbuf=32 * 1024)
        read_headers(sock)
        # Let the kernel buffers fill so the server is blocked on a slow reader,
        # i.e. the cut happens mid-chunk.
        time.sleep(0.3)
        if how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        made_at_cut = t.made
        cut = time.monotonic()
        sock.close()
        assert t.cleaned.wait(5), "the producer was never closed"
        latency = t.cleaned_at - cut
    # At most one chunk is produced after the disconnect.
    assert t.made - made_at_cut <= 1
    # The figure is 100 ms; the assertion keeps a wide margin for noisy CI.
    assert latency < 1.0, latency
