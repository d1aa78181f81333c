"""The ledger is authoritative: kill -9 of a real server never loses a record a client relies on.

A server process (``ledger_server.py``, uvicorn) streams bodies under steady load and is
killed with SIGKILL at a random moment 0-100 ms after one of its completions; then it is
started again on the same store, until 1,000 transfers have been tried. Afterwards:

* every transfer whose client saw the whole body reads ``completed``, with the bytes and
  digest the client got: the end of a body leaves only after its record is committed;
* a transfer the client saw incomplete may read anything (no record at all, if the
  server died before writing its begin; ``streaming``/``interrupted``; even ``completed``
  if the server died between the commit and the last message), but a receipt of what
  the client got is never verified: the model's verdict catches the missing bytes.

With ``--late`` (``commit_before_end=False``) the same run loses records, which shows the
test can fail.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sluicegate.ledger import Ledger, SQLiteLedger, UnknownTransfer, digest_of, judge
from tests.redis_server import free_port
from tests.servers import wait_for_port

SERVER = Path(__file__).with_name("ledger_server.py")
TRANSFERS = 1000
CONCURRENCY = 16
#: requests the kills broke, with or without their headers: proof the kills hit a busy server
CUT = [0]

pytestmark = pytest.mark.slow


@dataclass
class Seen:
    """What one client got."""

    transfer_id: str
    complete: bool
    received: bytes


async def _one(client: httpx.AsyncClient, seen: list[Seen]) -> None:
    kind = random.choice(("chunked", "sized"))
    n = random.choice((1, 100, 1024, random.randint(1, 40_000)))
    tid, parts, complete = "", [], False
    try:
        async with client.stream("GET", f"/{kind}/{n}") as response:
            tid = response.headers.get("transfer-id", "")
            async for part in response.aiter_raw():
                parts.append(part)
            complete = True
    except httpx.HTTPError:
        CUT[0] += 1
    if tid:
        seen.append(Seen(tid, complete, b"".join(parts)))


async def _round(port: int, proc: subprocess.Popen[bytes], seen: list[Seen]) -> None:
    """Load the server steadily; kill it 0-100 ms after its k-th completion (k random)."""
    kill_after = random.randint(1, 60)
    first = len(seen)
    enough, killed = asyncio.Event(), asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while not killed.is_set():
            await _one(client, seen)
            if sum(s.complete for s in seen[first:]) >= kill_after:
                enough.set()

    async def killer() -> None:
        await enough.wait()
        await asyncio.sleep(random.uniform(0, 0.1))  # the load goes on meanwhile
        os.kill(proc.pid, signal.SIGKILL)
        killed.set()

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10
    ) as client:
        await asyncio.wait_for(
            asyncio.gather(killer(), *(worker(client) for _ in range(CONCURRENCY))), 60
        )
    proc.wait(10)


def _start(port: int, store: list[str], late: bool) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), *store, *(["--late"] if late else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(proc, port, "ledger_server.py")
    return proc


def _run(store: list[str], transfers: int, late: bool = False) -> list[Seen]:
    seen: list[Seen] = []
    CUT[0] = 0
    rounds = 0
    while len(seen) < transfers and rounds < 60:
        rounds += 1
        port = free_port()
        proc = _start(port, store, late)
        try:
            asyncio.run(_round(port, proc, seen))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
    assert len(seen) >= transfers, f"only {len(seen)} transfers in {rounds} rounds"
    assert CUT[0] > 0, "no kill broke a request: the test tests nothing"
    print(f"{rounds} kills broke {CUT[0]} requests")
    return seen


async def _check(ledger: Ledger, seen: list[Seen]) -> tuple[list[str], Counter[str]]:
    """The complete transfers whose record does not vouch for them, and a tally of states.

    Checks the incomplete ones too: whatever their record says, the missing bytes show.
    """
    lost, tally = [], Counter[str]()
    async with ledger:
        for s in seen:
            got = "whole body" if s.complete else "cut"
            try:
                record = await ledger.get(s.transfer_id)
            except UnknownTransfer:
                tally[f"{got}: no record"] += 1
                if s.complete:
                    lost.append(f"{s.transfer_id}: no record")
                continue
            tally[f"{got}: {record.state}"] += 1
            verdict, _ = judge(record, len(s.received), digest_of(s.received), at=time.time())
            if s.complete and not verdict.verified:
                lost.append(f"{s.transfer_id}: {record.state}, {verdict.reason}")
            if not s.complete:
                assert not verdict.verified, (s.transfer_id, record)
    print(f"{len(seen)} transfers: {dict(sorted(tally.items()))}")
    return lost, tally


def test_sqlite_kill_9_never_loses_a_completed_record(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    seen = _run(["sqlite", str(db)], TRANSFERS)
    lost, tally = asyncio.run(_check(SQLiteLedger(db), seen))
    assert lost == [], f"{tally}; lost: {lost[:10]}"


def test_redis_kill_9_never_loses_a_completed_record(redis_url: str) -> None:
    from sluicegate.ledger.redis import RedisLedger

    prefix = f"kill:{time.monotonic_ns()}:"
    seen = _run(["redis", redis_url, prefix], TRANSFERS)
    lost, tally = asyncio.run(_check(RedisLedger(redis_url, prefix=prefix), seen))
    assert lost == [], f"{tally}; lost: {lost[:10]}"


def test_without_commit_before_end_a_kill_loses_records(tmp_path: Path) -> None:
    """The control: recording the end after the last byte leaves the window open."""
    db = tmp_path / "ledger.db"
    seen = _run(["sqlite", str(db)], 300, late=True)
    lost, tally = asyncio.run(_check(SQLiteLedger(db), seen))
    assert lost, f"{tally}; nothing lost without commit_before_end"
