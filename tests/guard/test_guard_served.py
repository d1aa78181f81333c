"""The guard and the budgets on a real uvicorn, with clients that really read slowly.

The server runs in a thread of this process on a socket bound by
:func:`sluicegate.cli.serve.bind_socket`, so the tests can look at the server side of each
connection (its kernel send queue) and at the stream's metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from sluicegate.cli.serve import bind_socket, guarded_http
from sluicegate.engine.metrics import REGISTRY, StreamMetrics
from sluicegate.engine.response import StreamResponse
from sluicegate.protect.budgets import Budgets
from sluicegate.protect.guard import GuardPolicy
from tests.servers import read_headers, request, server_side_fd, unsent_bytes

KiB, MiB = 1024, 1024 * 1024
SNDBUF = 64 * KiB
CHUNK = b"x" * (64 * KiB)

STALL = GuardPolicy(stall_timeout=1.0)
# A wait may last 2 s (512 KiB at 256 KiB/s) before it counts as a stall, so a
# trickle is judged by its rate.
RATE = GuardPolicy(stall_timeout=None, min_rate=256 * KiB, window=1.0, grace=1.0,
                   server_buffer=512 * KiB)  # fmt: skip
BUDGETS = Budgets(max_streams=2, retry_after=2.0)
# Three streams of 1 MiB chunks fit: each reserves 1 MiB at first and, once settled,
# holds at least its whole current chunk.
MEMORY = Budgets(max_buffered=3 * MiB + 512 * KiB, reserve=MiB, settle=0.5, retry_after=3.0)
BIG = b"m" * MiB


async def sized(size: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        n = min(len(CHUNK), size - sent)
        yield CHUNK[:n]
        sent += n


async def live_feed() -> AsyncIterator[bytes]:
    """A producer slower than any client: 100 bytes every 50 ms for 3 s."""
    import asyncio

    for _ in range(60):
        await asyncio.sleep(0.05)
        yield b"e" * 100


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    size = int(scope["query_string"] or 50 * MiB)
    if path == "/stall":
        response = StreamResponse(sized(size), content_length=size, guard=STALL)
    elif path == "/rate":
        response = StreamResponse(sized(size), content_length=size, guard=RATE)
    elif path == "/feed":
        # 10,000 times the feed's own rate: were the producer's 3 s of pauses counted
        # as the client's, the rate would be judged after 1.5 s of them and fail it.
        # The grace is for the client's real waits, which here are scheduler hiccups
        # (a send preempted for a few ms counts as a wait for 100 B): they summed to
        # 15-250 ms in runs at load average 6 on 2 cores.
        strict = GuardPolicy(stall_timeout=0.3, min_rate=MiB, window=0.5, grace=1.5)
        response = StreamResponse(live_feed(), content_length=6000, guard=strict)
    elif path == "/memory":
        response = StreamResponse(
            (BIG for _ in range(size // MiB)), content_length=size, admission=MEMORY
        )
    elif path == "/budget":
        response = StreamResponse(sized(size), content_length=size, admission=BUDGETS)
    else:
        raise AssertionError(path)
    await response(scope, receive, send)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    sock = bind_socket("127.0.0.1", 0, sndbuf=SNDBUF)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="critical",  # each cut is an ERROR line from uvicorn
        access_log=False,
        http=guarded_http(linger=1.0),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def stream_of(path: str, timeout: float = 5.0) -> StreamMetrics:
    """The live metrics of the one stream serving ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = [m for m in REGISTRY.active() if m.path == path]
        if mine:
            assert len(mine) == 1
            return mine[0]
        time.sleep(0.005)
    raise AssertionError(f"no stream for {path}")


def wait_state(m: StreamMetrics, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while m.state == "streaming" and time.monotonic() < deadline:
        time.sleep(0.01)
    return m.state


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no content-length")


def read_paced(sock: socket.socket, rate: float, first: bytes, timeout: float = 20.0) -> int:
    """Read at ``rate`` B/s (on a schedule, so a late wake-up is made up) until EOF."""
    sock.settimeout(timeout)
    got = len(first)
    start = time.monotonic()
    while True:
        due = start + got / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            data = sock.recv(8 * KiB)
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += len(data)


def test_accepted_sockets_inherit_the_listeners_send_buffer(port: int) -> None:
    with contextlib.closing(request(port, f"/budget?{50 * MiB}", rcvbuf=4 * KiB)) as client:
        read_headers(client)
        fd = server_side_fd(client)
        with contextlib.closing(socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)) as dup:
            # Linux doubles SO_SNDBUF for its bookkeeping.
            assert dup.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * SNDBUF


def test_a_stalled_client_is_cut_one_stall_timeout_after_the_buffers_filled(port: int) -> None:
    with contextlib.closing(request(port, "/stall", rcvbuf=4 * KiB)) as client:
        head, _ = read_headers(client)  # ...and then read nothing
        assert head.startswith(b"HTTP/1.1 200")
        stream = stream_of("/stall")
        fd = server_side_fd(client)
        # The server's kernel send queue grows until it is full; then uvicorn's write
        # buffer fills, and the send after that waits for the client: from then on
        # neither the queue nor the bytes the server accepted change. Note the last
        # change of each.
        queued_last, sent_last, peak = -1, -1, 0
        queue_full_at = wait_began_at = time.monotonic()
        while stream.state == "streaming" and time.monotonic() - wait_began_at < 5:
            now = time.monotonic()
            queued, sent = unsent_bytes(fd), stream.bytes_sent
            if queued != queued_last:
                queued_last, queue_full_at, peak = queued, now, max(peak, queued)
            if sent != sent_last:
                sent_last, wait_began_at = sent, now
            time.sleep(0.005)
        cut_at = time.monotonic()
        assert stream.state == "timed_out"
        print(
            f"stall cut {cut_at - wait_began_at:.3f} s after the last send accepted, "
            f"{cut_at - queue_full_at:.3f} s after the kernel queue stopped growing ({peak} B)"
        )
        assert queue_full_at <= wait_began_at + 0.1
        # Not before the stall timeout; after it by no more than a loaded machine's
        # scheduling delays (the server's loop shares this process with the test).
        assert 0.9 <= cut_at - wait_began_at <= 3.0
        # What the stalled client pinned in the server's kernel is bounded by --sndbuf.
        assert 0 < peak <= 2 * SNDBUF
        # The connection is reset without waiting for the client to read what uvicorn
        # and the kernel still hold for it (a plain close would wait forever).
        while time.monotonic() - cut_at < 2:
            try:
                server_side_fd(client)
            except LookupError:
                break
            time.sleep(0.01)
        hung_up = time.monotonic() - cut_at
        assert hung_up < 1.5, hung_up
        got = read_paced(client, 1e12, b"", timeout=5)
        assert got < content_length(head)


def test_a_trickle_below_min_rate_is_cut(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sluicegate")
    started = time.monotonic()
    with contextlib.closing(request(port, "/rate", rcvbuf=16 * KiB)) as client:
        head, first = read_headers(client)
        stream = stream_of("/rate")
        got = read_paced(client, 100 * KiB, first)  # 100 KiB/s, under 256 KiB/s
    elapsed = time.monotonic() - started
    assert wait_state(stream, 5) == "timed_out"
    assert got < content_length(head)
    # Judged after 1 s of waiting, over a 1 s window: cut within a few seconds.
    assert elapsed < 10, elapsed
    assert any("under min_rate" in r.getMessage() for r in caplog.records)


def test_an_honest_slow_client_above_min_rate_runs_to_completion(port: int) -> None:
    size = 6 * MiB
    with contextlib.closing(request(port, f"/rate?{size}", rcvbuf=16 * KiB)) as client:
        head, first = read_headers(client)
        stream = stream_of("/rate")
        # 8x the minimum, for 3 s: a reader thread starved for a while on a loaded
        # machine (it shares the GIL with the server's loop) still keeps the rate.
        got = read_paced(client, 2 * MiB, first)
    assert got == content_length(head) == size
    assert wait_state(stream, 5) == "completed"
    assert stream.blocked_seconds > 1.0  # it really was held back by the client


def test_a_slow_producer_is_not_cut_by_a_strict_guard(port: int) -> None:
    with contextlib.closing(request(port, "/feed")) as client:
        head, first = read_headers(client)
        stream = stream_of("/feed")
        got = read_paced(client, 1e12, first)
    assert got == content_length(head) == 6000
    assert wait_state(stream, 10) == "completed"
    # The producer paused 3 s in all; none of it counts as waiting for the client.
    assert stream.blocked_seconds < 1.5, stream.blocked_seconds


def test_over_the_stream_budget_a_503_and_the_running_streams_finish(port: int) -> None:
    size = 2 * MiB
    running = [request(port, f"/budget?{size}", rcvbuf=16 * KiB) for _ in range(2)]
    try:
        heads = [read_headers(c) for c in running]
        assert all(h.startswith(b"HTTP/1.1 200") for h, _ in heads)
        assert BUDGETS.active == 2
        with contextlib.closing(request(port, f"/budget?{size}")) as third:
            head, body = read_headers(third)
            n = content_length(head)
            while len(body) < n:
                body += third.recv(4096)
        assert head.startswith(b"HTTP/1.1 503")
        assert b"\r\nretry-after: 2" in head.lower()
        assert b"application/problem+json" in head
        assert json.loads(body)["detail"] == "too many streams (2 of 2)"
        # The two running streams were not touched: each finishes whole.
        results: list[int] = []
        readers = [
            threading.Thread(target=lambda c=c, f=f: results.append(read_paced(c, 4 * MiB, f)))
            for c, (_, f) in zip(running, heads, strict=True)
        ]
        for r in readers:
            r.start()
        for r in readers:
            r.join(20)
        assert results == [size, size]
    finally:
        for c in running:
            c.close()
    deadline = time.monotonic() + 5
    while BUDGETS.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert BUDGETS.active == 0


def test_over_the_memory_budget_the_next_stalled_stream_gets_a_503(port: int) -> None:
    # Three stalled readers of 1 MiB chunks are admitted at once (reservations), the
    # fourth is refused before any of them produced, and still refused once they
    # settled and count what they really hold.
    size = 64 * MiB
    held = [request(port, f"/memory?{size}", rcvbuf=16 * KiB) for _ in range(3)]
    try:
        assert all(read_headers(c)[0].startswith(b"HTTP/1.1 200") for c in held)
        for wait in (0.0, 1.0):
            time.sleep(wait)
            with contextlib.closing(request(port, f"/memory?{size}")) as extra:
                head, body = read_headers(extra)
                n = content_length(head)
                while len(body) < n:
                    body += extra.recv(4096)
            assert head.startswith(b"HTTP/1.1 503"), head
            assert b"\r\nretry-after: 3" in head.lower()
            assert json.loads(body)["detail"].startswith("stream buffers are full")
            assert MEMORY.active == 3
        # settled: what they really hold counts, at least one whole chunk each
        assert MEMORY.buffered() >= 3 * MiB
    finally:
        for c in held:
            c.close()
    deadline = time.monotonic() + 5
    while MEMORY.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert MEMORY.active == 0
    with contextlib.closing(request(port, f"/memory?{MiB}")) as again:
        assert read_headers(again)[0].startswith(b"HTTP/1.1 200")


def test_a_complete_response_left_unread_is_reset_after_the_linger(port: int) -> None:
    # Small enough to leave the app entirely (the server buffers the tail), too big
    # for the kernel buffers: uvicorn's close() would wait for the client forever.
    linger = 1.0  # the fixture's
    idle = time.monotonic() + 10
    while REGISTRY.active():  # streams of earlier tests would blur the count below
        assert time.monotonic() < idle, REGISTRY.active()
        time.sleep(0.01)
    before = REGISTRY.snapshot()["completed"]
    # The linger cannot start before the request is sent, nor after the head is read:
    # the bounds are taken from those two moments, so a late wake-up of this thread or
    # of the server's loop widens the window it is judged in, never shrinks it.
    sent_at = time.monotonic()
    with contextlib.closing(request(port, f"/budget?{160 * KiB}", rcvbuf=4 * KiB)) as client:
        read_headers(client)
        done_at = time.monotonic()  # the response completes at once: it all fits
        seen = False
        while time.monotonic() - done_at < linger + 10:
            try:
                server_side_fd(client)
            except LookupError:
                break
            seen = True
            time.sleep(0.01)
        gone_at = time.monotonic()
    assert seen, "the connection was gone before it was first looked for"
    assert gone_at - sent_at >= linger - 0.1, gone_at - sent_at  # not reset early
    assert gone_at - done_at <= linger + 3.0, gone_at - done_at  # ...nor kept for ever
    # The response's last send may have waited on the reader until the reset: the
    # server's loop counts it as it unwinds, a moment after the socket is gone.
    settled = time.monotonic() + 10
    while REGISTRY.snapshot()["completed"] < before + 1 and time.monotonic() < settled:
        time.sleep(0.01)
    assert REGISTRY.snapshot()["completed"] == before + 1
