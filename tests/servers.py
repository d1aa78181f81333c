"""Real servers on 127.0.0.1 for tests whose behaviour depends on sockets."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn


@contextlib.contextmanager
def running(
    app: Any, *, http: str = "httptools", loop: str = "asyncio", lifespan: str = "off"
) -> Iterator[int]:
    """Run ``app`` on uvicorn in a thread of this process; yield its port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,
        loop=loop,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def unsent_bytes(sock_fd: int) -> int:
    """Bytes in a socket's kernel send queue (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock_fd, termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def unread_bytes(sock: socket.socket) -> int:
    """Bytes in a socket's kernel receive queue (FIONREAD)."""
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


#: ``tcp_state`` of a connection both ends still hold open (include/net/tcp_states.h).
TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (the first byte of ``struct tcp_info``).

    Tells a client that reads nothing whether the server hung up (reset or closed).
    """
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def server_side_fd(client: socket.socket) -> int:
    """The fd of the accepted socket that talks to ``client``, in this process."""
    import psutil

    local = client.getsockname()
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.raddr and tuple(conn.raddr) == local and conn.fd != -1:
            return int(conn.fd)
    raise LookupError("no server-side socket for this client")


def request(port: int, path: str, *, rcvbuf: int | None = None) -> socket.socket:
    """Open a connection and send a GET; a small ``rcvbuf`` makes a slow reader real."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_headers(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of the headers; return (head, the body bytes read past it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            raise ConnectionError("closed before the headers ended")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def wait_for_port(proc: Any, port: int, what: str, timeout: float = 20.0) -> None:
    """Wait until ``proc`` accepts connections on ``port``; fail the test if it never does."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            stderr = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"{what} did not start {stderr!r}"[:2000])
        time.sleep(0.05)


def stop(proc: Any, grace: float = 10.0) -> None:
    """End a process we started: terminate, then kill after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


#: Server kinds :func:`serving` runs, each in its own process.
SERVERS = ("uvicorn-httptools", "uvicorn-h11", "hypercorn", "granian")

_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(server: str, app: str, port: int) -> list[str]:
    """The command line that serves ``app`` ("module:attr") with ``server`` on ``port``."""
    if server.startswith("uvicorn"):
        http = server.split("-")[1]
        return [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--http", http]
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}"]
    if server == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            app,
        ]
    raise ValueError(f"unknown server {server!r}")


@contextlib.contextmanager
def serving(server: str, app: str, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """Run ``app`` on ``server`` (one of :data:`SERVERS`) in a subprocess; yield its port.

    Skips the test when the server is not installed.
    """
    import pytest

    module = server.split("-")[0]
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed")
    port = free_port()
    command = [*server_command(server, app, port), "--log-level", "critical"]
    proc = subprocess.Popen(
        command,
        cwd=_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(proc, port, server)
        yield port
    finally:
        stop(proc)
