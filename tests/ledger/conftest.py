"""Fixtures for the ledger tests: a real redis-server, and ledgers of every backend."""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.ledger import Ledger, SQLiteLedger
from tests.servers import stop

BACKENDS = ["sqlite", "redis"]
REDIS_MISSING = "redis-server is not on PATH (apt-get install redis-server; CI installs it)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1, without persistence, ended by pid."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip(REDIS_MISSING)
    workdir = tmp_path_factory.mktemp("redis")
    for _attempt in range(3):  # the port can be taken between probing and binding
        port = _free_port()
        proc = subprocess.Popen(
            [
                exe,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", str(workdir), "--protected-mode", "yes", "--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.02)
        else:
            proc.kill()
            proc.wait(5)
            continue
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(proc, grace=5)
        return
    pytest.fail("could not start redis-server")


MakeLedger = Callable[..., Ledger]


@pytest.fixture(params=BACKENDS)
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Ledger]]:
    """A factory of unopened ledgers that share one store (a file, or a key prefix)."""
    if request.param == "sqlite":
        db = tmp_path / "ledger.db"

        def make(**options: Any) -> Ledger:
            return SQLiteLedger(db, **options)

    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{request.node.name}:{time.monotonic_ns()}:"
        from sluicegate.ledger.redis import RedisLedger

        def make(**options: Any) -> Ledger:
            options.setdefault("prefix", prefix)
            return RedisLedger(url, **options)

    yield make


@pytest.fixture
async def ledger(make_ledger: MakeLedger) -> AsyncIterator[Ledger]:
    """An open ledger of each backend."""
    async with make_ledger() as opened:
        yield opened


VICTIM = Path(__file__).with_name("ledger_victim.py")


@pytest.fixture
def victim() -> Iterator[Callable[..., tuple[subprocess.Popen[str], dict[str, Any]]]]:
    """Start ``ledger_victim.py`` with arguments; return it and the ids it printed.

    Every victim still running at teardown is killed by pid.
    """
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        proc = subprocess.Popen(
            [sys.executable, str(VICTIM), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready and proc.stdout else ""
        if not line:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise AssertionError(f"victim did not start: {err[-2000:]}")
        return proc, json.loads(line)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
