"""The pump on every server, driven by a plain ASGI app whose ``send`` nobody wraps.

Granian's ``send()`` returns an awaitable that is not a coroutine; servers on ASGI 2.3
return from ``send()`` at once after the client has gone. Both only show on a real
server and a real socket.

Granian also swallows what is sent after the client left and reports the disconnect
a few milliseconds later; a producer that never waits runs on until then (hundreds of
chunks of pure CPU work). What the pump promises there is what it promises
everywhere: at most one more chunk once the server has said the client is gone.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.engine.served_app import BIG, MANY
from tests.servers import SERVERS, read_headers, request, serving

# The target is 50 ms; a test on a shared machine asserts a bound far above it.
CLOSE_BOUND = 2.0
# Servers that learn of a disconnect only some time after the client left.
LATE_REPORTERS = {"granian"}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("producer-logs")


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, log_dir: Path) -> Iterator[tuple[str, int]]:
    env = {"SLUICEGATE_TEST_LOG_DIR": str(log_dir)}
    with serving(request.param, "tests.engine.served_app:app", env) as port:
        yield request.param, port


@pytest.fixture
def port(server: tuple[str, int]) -> int:
    return server[1]


def test_one_large_chunk_arrives_intact(port: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{port}/big", timeout=30)
    assert response.status_code == 200
    assert response.content == BIG


def test_many_small_chunks_without_an_await_arrive_intact(port: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{port}/many", timeout=30)
    assert response.status_code == 200
    assert response.content == b"".join(MANY)


@pytest.mark.parametrize("attempt", range(3))
def test_a_client_that_leaves_stops_the_producer_at_once(
    server: tuple[str, int], log_dir: Path, attempt: int
) -> None:
    kind, port = server
    name = f"leave-{port}-{attempt}"
    sock = request(port, f"/endless?name={name}")
    try:
        _, body = read_headers(sock)
        received = len(body)
        while received < 2 * 1024 * 1024:
            more = sock.recv(256 * 1024)
            assert more, "the stream ended early"
            received += len(more)
    finally:
        # Reset, not a polite FIN: the client is gone, whatever the server does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cut = time.monotonic()
        sock.close()
    log = log_dir / f"{name}.json"
    deadline = time.monotonic() + 10
    while not log.exists():
        assert time.monotonic() < deadline, "the producer was never closed"
        time.sleep(0.02)
    record = json.loads(log.read_text())
    assert record["closed"] - cut < CLOSE_BOUND
    # Once the server has said so, the pump makes nothing more: the news cancels it
    # at its next turn of the loop, which comes after every message.
    (reported,) = record["reported"]
    assert [t for t in record["made"] if t > reported] == []
    if kind not in LATE_REPORTERS:
        # Between the cut and the news: the server's own turns of the loop (it sees
        # the reset in one, reports it in the next), each with one message from us.
        made_after_cut = [t - cut for t in record["made"] if t > cut]
        assert len(made_after_cut) <= 3, (kind, made_after_cut, reported - cut)
