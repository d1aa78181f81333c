"""A real redis-server for tests: started on 127.0.0.1 without persistence, ended by pid.

``redis_url`` is a session fixture (import it into a ``conftest.py``);
:class:`RedisServer` is for tests that stop and restart Redis under a running app.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import stop

REDIS_MISSING = "redis-server is not on PATH (apt-get install redis-server; CI installs it)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on a fixed port, which can be stopped and started again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip(REDIS_MISSING)
        self.exe = exe
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> bool:
        """Start it and wait for PONG; False if it did not come up (port taken)."""
        self.proc = subprocess.Popen(
            [
                self.exe,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.workdir)),
                *("--protected-mode", "yes", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """End the process (by pid) if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, grace=5)
        self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1, without persistence, ended by pid."""
    workdir = tmp_path_factory.mktemp("redis")
    for _attempt in range(3):  # the port can be taken between probing and binding
        server = RedisServer(workdir)
        if server.start():
            try:
                yield server.url
            finally:
                server.stop()
            return
    pytest.fail("could not start redis-server")
