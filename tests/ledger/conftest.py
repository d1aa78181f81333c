"""Fixtures for the ledger tests: a real redis-server, and ledgers of every backend."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.ledger import Ledger, SQLiteLedger
from tests.redis_server import redis_url

BACKENDS = ["sqlite", "redis"]
__all__ = ["redis_url"]  # the shared fixture (tests/redis_server.py), used here


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
