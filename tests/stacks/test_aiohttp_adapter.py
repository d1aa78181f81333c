"""aiohttp: a producer waiting between chunks is closed when the client leaves,
with and without aiohttp's ``handler_cancellation``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import read_headers, request
from tests.stacks import matrix

pytest.importorskip("aiohttp")


@pytest.fixture(scope="module", params=["aiohttp", "aiohttp-cancel"])
def server(request: pytest.FixtureRequest) -> Iterator[matrix.Server]:
    with matrix.serving(request.param) as running:
        yield running


def test_a_waiting_producer_is_closed_when_the_client_leaves(server: matrix.Server) -> None:
    token = uuid.uuid4().hex
    sock = request(server.port, f"/aiohttp/slow/{token}")
    try:
        head, _ = read_headers(sock)
        assert head.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while matrix.state(server, token).get("made", 0) < 1:
            assert time.monotonic() < deadline, "the producer never started"
            time.sleep(0.02)
    finally:
        sock.close()
    left = time.time()
    deadline = time.monotonic() + 5
    while (closed := matrix.state(server, token).get("closed_at")) is None:
        assert time.monotonic() < deadline, "the producer was not closed"
        time.sleep(0.02)
    # The producer sleeps 30 s between chunks: only the connection watch (or aiohttp's
    # cancellation) can have closed it this soon. Wide margin for a loaded machine.
    assert closed - left < 2.0
    assert matrix.state(server, token)["made"] == 1
