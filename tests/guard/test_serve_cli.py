"""``sluicegate serve``: its flags, its one-line errors, and the defences end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.cli.serve import bind_socket, policies
from sluicegate.engine.response import defaults
from sluicegate.errors import ConfigError
from sluicegate.protect.budgets import Budgets
from sluicegate.protect.guard import GuardPolicy
from tests.servers import read_headers, request, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sndbuf", "12Q"], "Error: --sndbuf: bad size '12Q': unknown unit 'Q'"),
        (["--sndbuf", "1K"], "Error: --sndbuf: bad size '1K': at least 4K"),
        (["--notsent-lowat", "12"], "Error: --notsent-lowat: bad size '12': 1K to 2G"),
        (["--notsent-lowat", "lots"], "Error: --notsent-lowat: bad size 'lots'"),
        (["--notsent-lowat-until", "0"], "Error: --notsent-lowat-until: bad size '0'"),
        (["--notsent-lowat-until", "-1M"], "Error: --notsent-lowat-until: bad size '-1M'"),
        (["--notsent-lowat-until", "soon"], "Error: --notsent-lowat-until: bad size 'soon'"),
        (["--stall-timeout", "no"], "Error: --stall-timeout: bad duration 'no'"),
        (["--stall-timeout", "0"], "Error: --stall-timeout: bad duration '0': must be more than"),
        (["--stall-timeout", "soon"], "Error: --stall-timeout: bad duration 'soon'"),
        (["--min-rate", "0"], "Error: --min-rate: bad rate '0': must be more than 0"),
        (["--rate-window", "0s"], "Error: --rate-window: bad duration '0s'"),
        (["--grace", "x"], "Error: --grace: bad duration 'x'"),
        (["--max-streams", "0"], "Error: Invalid value for '--max-streams'"),
        (["--max-streams-per-client", "-2"], "Error: Invalid value for '--max-streams-per-client'"),
        (["--max-buffered", "lots"], "Error: --max-buffered: bad size 'lots'"),
        (["--log-level", "loud"], "Error: Invalid value for '--log-level'"),
        (["--app", "no_such_module:app"], "Error: --app: cannot import 'no_such_module'"),
        (["--min-rate", "4K", "--app", "nope"], "Error: --app: expected module:attribute"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    # Nothing was set up on the way to the error: the defaults are process-wide.
    assert defaults.guard is None and defaults.admission is None


def test_an_address_in_use_is_a_one_line_error() -> None:
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port), "--stall-timeout", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert defaults.guard is None


def test_policies_from_flags() -> None:
    assert policies() == (None, None)
    guard, budgets = policies(stall_timeout=5.0, min_rate=1000.0, rate_window=2.0, grace=1.0)
    assert guard == GuardPolicy(stall_timeout=5.0, min_rate=1000.0, window=2.0, grace=1.0)
    assert budgets is None
    guard, budgets = policies(max_streams=3, max_buffered=2**20)
    assert guard is None and isinstance(budgets, Budgets)
    assert (budgets.max_streams, budgets.max_streams_per_client, budgets.max_buffered) == (
        3,
        None,
        2**20,
    )
    with pytest.raises(ConfigError):
        policies(min_rate=-1.0)


def test_bind_socket_sets_the_send_buffer_before_listening() -> None:
    with contextlib.closing(bind_socket("127.0.0.1", 0, sndbuf=96 * 1024)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 96 * 1024
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as auto:
        assert auto.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket options")
def test_accepted_connections_inherit_the_unsent_limit() -> None:
    with contextlib.closing(bind_socket("127.0.0.1", 0, notsent_lowat=48 * 1024)) as sock:
        sock.setblocking(True)
        with socket.create_connection(sock.getsockname()) as client:
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, NOTSENT_LOWAT) == 48 * 1024
                # Autotuning stays on: the send buffer is the kernel's default, not fixed.
                assert client.getsockopt(socket.IPPROTO_TCP, NOTSENT_LOWAT) != 48 * 1024


def _listening_line(*flags: str) -> str:
    """Start ``sluicegate serve`` with ``flags``; return the line it logs when ready."""
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "sluicegate", "serve", "--port", str(port), *flags]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(proc, port, "sluicegate serve", timeout=15)
        # The socket listens before the line is logged; a served request comes after it.
        with contextlib.closing(request(port, "/hello")) as sock:
            assert read_headers(sock)[0].startswith(b"HTTP/1.1 200")
    finally:
        stop(proc)
    assert proc.stderr is not None
    lines = [ln for ln in proc.stderr.read().decode().splitlines() if "sluicegate: listening" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def test_serve_defaults_bound_unsent_bytes_and_cut_a_stall_after_60_s() -> None:
    line = _listening_line()
    assert "SO_SNDBUF autotuned, TCP_NOTSENT_LOWAT 32,768 bytes" in line, line
    assert "until its client has acknowledged 8,388,608;" in line, line
    assert "stall_timeout=60.0" in line and "(a send may wait 60 s)" in line, line


def test_serve_keeps_the_unsent_limit_for_the_whole_connection_if_told() -> None:
    line = _listening_line("--notsent-lowat-until", "off")
    assert "TCP_NOTSENT_LOWAT 32,768 bytes per connection;" in line, line


def test_serve_turns_the_defaults_off() -> None:
    line = _listening_line("--stall-timeout", "off", "--notsent-lowat", "off")
    assert "TCP_NOTSENT_LOWAT off" in line and "guard None" in line, line
    assert "(a send may wait forever)" in line, line


@pytest.fixture
def served() -> Iterator[int]:
    """``sluicegate serve`` with a 1 s stall timeout and room for one stream."""
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "sluicegate", "serve", "--port", str(port)]
    argv += ["--sndbuf", "64K", "--stall-timeout", "1s", "--max-streams", "1"]
    argv += ["--log-level", "critical"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(proc, port, "sluicegate serve", timeout=15)
        yield port
    finally:
        stop(proc)


def test_serve_cuts_a_stalled_reader_and_refuses_over_budget(served: int) -> None:
    size = 50 * 2**20
    with contextlib.closing(request(served, f"/download?size={size}", rcvbuf=4096)) as stalled:
        head, first = read_headers(stalled)
        assert head.startswith(b"HTTP/1.1 200")
        # While it holds the only place, the next stream is refused.
        with contextlib.closing(request(served, "/download?size=1K")) as other:
            head2, body = read_headers(other)
            other.settimeout(5)
            while chunk := other.recv(4096):
                body += chunk
        assert head2.startswith(b"HTTP/1.1 503")
        assert b"retry-after: 2" in head2.lower()
        assert "too many streams (1 of 1)" in json.loads(body)["detail"]
        time.sleep(2.5)  # read nothing: past the 1 s stall timeout
        # Now read as fast as possible: a stream still running would deliver all 50 MB
        # in well under the time allowed; a cut one ends short (EOF or reset).
        got = len(first)
        stalled.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(1 << 16):
                got += len(chunk)
        assert got < size / 10
    # The place was given back.
    with contextlib.closing(request(served, "/download?size=1K")) as after:
        assert read_headers(after)[0].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_reset_of_a_connection_that_already_closed_is_quiet(loop_name: str) -> None:
    """The linger timer can fire after the connection closed by itself (found by the
    attack suite: uvloop raised ValueError from a timer callback)."""
    from sluicegate.cli.serve import reset

    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    async def scenario() -> None:
        a, b = socket.socketpair()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        transport.get_extra_info("socket")  # as uvicorn does when the connection is made
        transport.close()
        await asyncio.sleep(0.05)  # the transport is now fully closed
        loop.call_soon(reset, transport)
        await asyncio.sleep(0.05)
        b.close()

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert errors == []
