"""Read timeouts (slowloris): the sans-IO clock, then uvicorn on real sockets.

The served tests run uvicorn with ``httptools`` and with ``h11`` in this process, with
timeouts of about a second, and talk to it with raw sockets, as slowloris does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.cli.readtimeouts import TRANSITIONS, Event, Phase, ReadClock
from sluicegate.cli.serve import guarded_http
from sluicegate.errors import ConfigError
from tests.servers import running

HEAD = 1.0  # header timeout of the served tests
BODY = 1.0  # body stall timeout of the served tests

# -- sans-IO ---------------------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(list(Event)), st.floats(0, 5)), max_size=30))
def test_the_clock_follows_its_table(steps: list[tuple[Event, float]]) -> None:
    clock = ReadClock(header_timeout=10.0, body_timeout=3.0)
    now = 0.0
    for event, dt in steps:
        now += dt
        before, deadline_before = clock.phase, clock.deadline
        expected = TRANSITIONS.get((before, event))
        if expected is None:
            with pytest.raises(ValueError, match="illegal"):
                clock.on(event, now)
            assert (clock.phase, clock.deadline) == (before, deadline_before)
            continue
        clock.on(event, now)
        assert clock.phase is expected
        if expected is Phase.HEADERS:
            # A trickle never extends the head's deadline: set once, on entering.
            assert clock.deadline == (deadline_before if before is Phase.HEADERS else now + 10)
        elif expected is Phase.BODY:
            assert clock.deadline == now + 3.0  # from the last read
        else:
            assert clock.deadline is None


def test_off_and_bad_timeouts() -> None:
    clock = ReadClock(header_timeout=None, body_timeout=None)
    clock.on(Event.CONNECTED, 0.0)
    assert clock.deadline is None and not clock.expired(1e9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            ReadClock(header_timeout=bad, body_timeout=None)


# -- served ----------------------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /: ok. GET /slow: answers after 2 s. POST /?wait=S: waits S s, reads the body."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * HEAD)
    got = 0
    if scope["method"] == "POST":
        query = scope["query_string"].decode()
        if query.startswith("wait="):
            await asyncio.sleep(float(query[5:]))
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # cut by the body timeout: nothing to answer
            got += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    body = f"ok {got}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=["httptools", "h11"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    http = guarded_http(None, request.param, header_timeout=HEAD, body_timeout=BODY)
    with running(app, http=http) as p:  # type: ignore[arg-type]
        yield p


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the connection")
    return data


_surplus: dict[socket.socket, bytes] = {}


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open.

    Bytes past it (a pipelined response that came in the same read) are kept for the
    next call.
    """
    data = _surplus.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        data += recv_some(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += recv_some(sock)
    if body[length:]:
        _surplus[sock] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


def assert_408(data: bytes, what: str) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data
    assert b"connection: close" in head.lower()
    assert json.loads(body)["timeout"] == what


def test_a_trickled_head_is_cut_at_the_header_timeout(port: int) -> None:
    with contextlib.closing(connect(port)) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        data = b""
        while time.monotonic() - start < 5 * HEAD:
            try:
                sock.sendall(b"X-a: b\r\n")  # slowloris: a header line now and then
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - start
    assert HEAD * 0.9 <= elapsed <= HEAD * 2.5, elapsed
    assert_408(data, "request head")


def test_a_silent_connection_is_cut_at_the_header_timeout(port: int) -> None:
    with contextlib.closing(connect(port)) as sock:
        start = time.monotonic()
        data = read_all(sock)
        elapsed = time.monotonic() - start
    assert HEAD * 0.9 <= elapsed <= HEAD * 2.5, elapsed
    assert_408(data, "request head")


def test_a_body_shorter_than_its_content_length_is_cut(port: int) -> None:
    """A receipt POST that promises 100 bytes and sends 10."""
    with contextlib.closing(connect(port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        start = time.monotonic()
        data = read_all(sock)
        elapsed = time.monotonic() - start
    assert BODY * 0.9 <= elapsed <= BODY * 2.5, elapsed
    assert_408(data, "request body")


def test_a_slow_but_steady_body_is_not_cut(port: int) -> None:
    """The body timeout is between reads, not for the whole body."""
    with contextlib.closing(connect(port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):
            time.sleep(BODY * 0.4)
            sock.sendall(b"x")
        assert read_response(sock).endswith(b"ok 8")


def test_an_app_that_does_not_read_yet_is_not_the_clients_fault(port: int) -> None:
    """1 MiB sent at once while the app waits 2 s: uvicorn stops reading, nobody stalls."""
    size = 1 << 20
    with contextlib.closing(connect(port)) as sock:
        head = f"POST /?wait={3 * BODY} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * size)
        assert read_response(sock).endswith(f"ok {size}".encode())


def test_a_client_waiting_for_100_continue_is_not_cut(port: int) -> None:
    with contextlib.closing(connect(port)) as sock:
        head = f"POST /?wait={2 * BODY} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        sock.sendall(head.encode() + b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += recv_some(sock)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(b"hello")
        assert read_response(sock).endswith(b"ok 5")


def test_keep_alive_clients_and_slow_apps_are_unaffected(port: int) -> None:
    with contextlib.closing(connect(port)) as sock:
        for path in ("/", "/slow", "/", "/"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(sock).endswith(b"ok 0")
            time.sleep(HEAD * 1.5)  # idle between requests: longer than the head timeout
        # A pipelined pair, then a head that arrives in pieces within the limit.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).endswith(b"ok 0")
        assert read_response(sock).endswith(b"ok 0")
        sock.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(HEAD * 0.3)
        sock.sendall(b"Host: x\r\n\r\n")
        assert read_response(sock).endswith(b"ok 0")
