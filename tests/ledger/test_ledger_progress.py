"""A long download's record shows its bytes growing while it streams; a short one never
writes progress.

The long case runs on a real server (``ledger_server.py``: uvicorn, a
:class:`~sluicegate.StreamResponse` recorded in the ledger, ``/slow/{n}`` sending 16 KiB
every 50 ms) and reads the record from the store through a second ledger instance, as
another worker or the status route would: what it sees was written, not held in the
server's memory. The short case checks that the counter a response hands to
:meth:`~sluicegate.ledger.Ledger.follow` is never even read for a transfer that ends
before its begin is written.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sluicegate.ledger import Ledger, SQLiteLedger, UnknownTransfer
from tests.ledger.conftest import MakeLedger
from tests.redis_server import free_port
from tests.servers import stop, wait_for_port

SERVER = Path(__file__).with_name("ledger_server.py")
SIZE = 16384 * 40  # 40 parts, 50 ms apart: about two seconds
EVERY = 0.25  # seconds between progress writes asked of the server


async def _watch_download(port: int, reader: Ledger) -> tuple[list[int], int]:
    """Download /slow/SIZE slowly; the record's bytes read while it streamed, and the total."""
    seen: list[int] = []
    got = 0
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        client.stream("GET", f"/slow/{SIZE}") as response,
    ):
        tid = response.headers["transfer-id"]
        last_look = 0.0
        async for part in response.aiter_bytes():
            got += len(part)
            now = time.monotonic()
            if now - last_look >= EVERY / 2:
                last_look = now
                try:
                    rec = await reader.get(tid)
                except UnknownTransfer:
                    continue  # its begin is written begin_delay after it began
                if rec.state == "streaming":
                    seen.append(rec.bytes_sent)
    final = await reader.get(tid)
    assert final.state == "completed" and final.bytes_sent == SIZE == got
    return seen, got


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_slow_download_shows_growing_bytes_while_open(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db = tmp_path / "ledger.db"
        store = ["sqlite", str(db)]

        def make() -> Ledger:
            return SQLiteLedger(db)

    else:
        from sluicegate.ledger.redis import RedisLedger

        url = request.getfixturevalue("redis_url")
        prefix = f"test:progress:{time.monotonic_ns()}:"
        store = ["redis", url, prefix]

        def make() -> Ledger:
            return RedisLedger(url, prefix=prefix)

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), *store, "--progress", str(EVERY)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(proc, port, "ledger_server.py")

        async def run() -> tuple[list[int], int]:
            async with make() as reader:
                return await _watch_download(port, reader)

        seen, _ = asyncio.run(run())
    finally:
        stop(proc)
    moved = sorted(set(seen))
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    # About 2 s at one write per 0.25 s: several distinct counts, none past the end.
    assert len(moved) >= 3 and moved[-1] > 0, f"the record hardly moved: {seen}"
    assert moved[-1] <= SIZE


async def test_a_short_transfer_never_reads_its_counter(make_ledger: MakeLedger) -> None:
    def counter() -> int:
        raise AssertionError("a transfer that ended before its begin was written was read")

    async with make_ledger(begin_delay=0.05) as ledger:
        for _ in range(20):
            tid = await ledger.begin("GET", "/small", size=1024)
            ledger.follow(tid, counter)
            await asyncio.sleep(0)
            await ledger.finish(tid, "completed", 1024)
        await asyncio.sleep(0.1)  # past begin_delay: nothing is left to sweep


async def test_a_followed_transfer_reports_its_counter(make_ledger: MakeLedger) -> None:
    sent = [0]
    async with make_ledger(begin_delay=0) as ledger, make_ledger() as other:
        tid = await ledger.begin("GET", "/big")
        ledger.follow(tid, lambda: sent[0])
        ledger.follow("A" * 22, lambda: 1)  # not streaming here: ignored
        sent[0] = 5000
        assert (await ledger.get(tid)).bytes_sent == 5000  # read when the record is
        await ledger.flush()
        assert (await other.get(tid)).bytes_sent == 5000  # and written by flush
        sent[0] = 7000
        await ledger.finish(tid, "completed", 7000)
        assert (await other.get(tid)).bytes_sent == 7000


async def test_a_failing_counter_is_dropped_not_raised(
    make_ledger: MakeLedger, caplog: pytest.LogCaptureFixture
) -> None:
    def counter() -> int:
        raise RuntimeError("broken")

    async with make_ledger(begin_delay=0) as ledger:
        tid = await ledger.begin("GET", "/big")
        await ledger.progress(tid, 10)
        ledger.follow(tid, counter)
        assert (await ledger.get(tid)).bytes_sent == 10
        assert "its byte counter failed" in caplog.text
        await ledger.flush()
        await ledger.finish(tid, "completed", 20)


async def _followed_at_once(db: Path, read_here_first: bool) -> int:
    """Stream a followed transfer whose row is written at once (``begin_delay=0``), move
    its counter to 1234 (reading it here first if asked), and return what another
    instance finds stored within 2 s (one poll is 50 ms)."""
    sent = [0]
    async with (
        SQLiteLedger(db, begin_delay=0, progress_interval=0.05, commit_delay=0) as ledger,
        SQLiteLedger(db) as other,
    ):
        tid = await ledger.begin("GET", "/big")
        ledger.follow(tid, lambda: sent[0])
        sent[0] = 1234
        if read_here_first:
            assert (await ledger.get(tid)).bytes_sent == 1234  # from memory: counter read
        stored = 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            stored = (await other.get(tid)).bytes_sent
            if stored == 1234:
                break
        await ledger.finish(tid, "completed", 1234)
        return stored


async def test_a_transfer_written_at_once_is_followed_too(tmp_path: Path) -> None:
    """``begin_delay=0`` writes the row before ``follow`` is called: it is polled anyway."""
    assert await _followed_at_once(tmp_path / "ledger.db", read_here_first=False) == 1234


async def test_reading_a_record_here_does_not_keep_its_progress_from_the_store(
    tmp_path: Path,
) -> None:
    """A ``get`` on the ledger that streams the transfer reads the counter too (the
    status route does, every time a client asks): the next poll must still write what
    the store does not have yet."""
    assert await _followed_at_once(tmp_path / "ledger.db", read_here_first=True) == 1234
