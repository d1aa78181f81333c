"""The four checks over servers × frameworks, on real servers and real clients.

One server process per server kind (module-scoped), every framework in it by path
prefix; one small case per check. Cells with a known cause of failure (see
:data:`tests.stacks.matrix.KNOWN`) are expected failures with that reason.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stacks import matrix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


CELLS = [(kind, fw) for kind in matrix.SERVERS for fw in matrix.frameworks(kind)]


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[matrix.Server]:
    program = matrix.SERVERS[request.param][0]
    pytest.importorskip(program)
    with matrix.serving(request.param) as running:
        yield running


@pytest.mark.parametrize("check", matrix.CHECKS)
@pytest.mark.parametrize(("server", "framework"), CELLS, indirect=["server"])
def test_cell(server: matrix.Server, framework: str, check: str, tmp_path: Path) -> None:
    result = matrix.run_check(server, framework, check, tmp_path)
    reason = matrix.known(server.kind, framework, check)
    if not result.passed and reason is not None:
        pytest.xfail(f"{reason} ({result.shown})")
    assert result.passed, f"{server.kind} / {framework} / {check}: {result.shown} {result.error}"


#: Servers that offer ASGI's http.response.trailers (measured; see docs/compatibility.md).
TRAILERS = {"hypercorn-h2c", "uvicorn-h2c"}
ASGI_SERVERS = [kind for kind in matrix.SERVERS if not kind.startswith("aiohttp")]


@pytest.mark.parametrize("server", ASGI_SERVERS, indirect=True)
def test_trailers_where_the_server_offers_them(server: matrix.Server) -> None:
    if server.kind.startswith("granian"):
        # The plain-ASGI endpoint crashes on granian until the engine fix; granian
        # offers no trailers extension either way (its scope's extensions).
        pytest.skip("granian offers no http.response.trailers")
    assert matrix.check_trailers(server) == (server.kind in TRAILERS)


@pytest.mark.parametrize("server", ASGI_SERVERS, indirect=True)
def test_base_http_middleware_is_reported_on_every_server(server: matrix.Server) -> None:
    before = matrix.caveats_seen(server).get("base-http-middleware", 0)
    assert server.client.get(f"{server.base}/fastapi/body").status_code == 200
    assert matrix.caveats_seen(server).get("base-http-middleware", 0) == before
    assert server.client.get(f"{server.base}/fastapi-mw/body").status_code == 200
    assert matrix.caveats_seen(server).get("base-http-middleware", 0) == before + 1


H2_SERVERS = [kind for kind, (_, h2) in matrix.SERVERS.items() if h2]


@pytest.mark.parametrize("server", H2_SERVERS, indirect=True)
def test_an_h2_stream_reset_closes_the_producer(server: matrix.Server) -> None:
    """The client cancels one stream (RST_STREAM) and keeps the connection."""
    import h2.config
    import h2.connection
    import h2.events

    token = uuid.uuid4().hex
    # A client that resets the stream: httpx closes an unfinished stream without telling
    # the server, so this speaks h2 itself (with the h2 package httpx uses).
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        conn.initiate_connection()
        path = f"/asgi/endless/{token}"
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)]
        conn.send_headers(1, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        received = 0
        while received < 256 * 1024:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    received += event.flow_controlled_length
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
            sock.sendall(conn.data_to_send())
        conn.reset_stream(1)  # CANCEL
        sock.sendall(conn.data_to_send())
        reset = time.time()
        deadline = time.monotonic() + 5
        while (closed := matrix.state(server, token).get("closed_at")) is None:
            assert time.monotonic() < deadline, "the producer was not closed"
            time.sleep(0.02)
        assert closed - reset < matrix.CLOSE_WITHIN
        # The connection is still open: a ping is answered.
        conn.ping(b"12345678")
        sock.sendall(conn.data_to_send())
        events: list[object] = []
        while not any(isinstance(e, h2.events.PingAckReceived) for e in events):
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            events += conn.receive_data(data)
