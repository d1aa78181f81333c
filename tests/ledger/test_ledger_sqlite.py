"""What only the SQLite backend promises: WAL, group commit, retention, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sluicegate.ledger.sqlite as sqlite_backend
from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.ledger import InvalidTransition, SQLiteLedger, digest_of, ledger_from_url
from sluicegate.ledger.redis import RedisLedger
from sluicegate.ledger.sqlite import _Op

Victim = Callable[..., tuple[Any, dict[str, Any]]]


def raw(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def rows(db: Path) -> dict[str, sqlite3.Row]:
    with raw(db) as conn:
        return {r["id"]: r for r in conn.execute("SELECT * FROM transfers")}


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(250):  # 5 s
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_one_file_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db):
        with raw(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM owners").fetchone()[0] == 1
    with raw(db) as conn:  # a clean close leaves no owner behind
        assert conn.execute("SELECT count(*) FROM owners").fetchone()[0] == 0


async def test_a_short_transfer_costs_one_row_write(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    # Without the journal the finish commits the row itself (test_ledger_journal: with).
    async with SQLiteLedger(db, begin_delay=3600, journal=False) as ledger:
        tid = await ledger.begin("GET", "/small")
        await ledger.progress(tid, 5)
        assert rows(db) == {}  # not written yet: the final state will be, in one go
        await ledger.finish(tid, "completed", 10, digest=digest_of(b"x" * 10))
        row = rows(db)[tid]  # finish returned: the row is committed
        assert (row["state"], row["bytes_sent"], row["method"]) == ("completed", 10, "GET")
        # a long transfer is written when the delay ends, or on flush
        slow = await ledger.begin("GET", "/slow")
        await ledger.flush()
        assert rows(db)[slow]["state"] == "streaming"
    async with SQLiteLedger(db, begin_delay=0.02) as ledger:
        tid = await ledger.begin("GET", "/timer")
        await wait_until(lambda: tid in rows(db))
        assert rows(db)[tid]["state"] == "streaming"


async def test_progress_writes_are_throttled(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, begin_delay=0, progress_interval=3600) as ledger:
        tid = await ledger.begin("GET", "/p")
        await ledger.flush()
        for n in range(1, 1001):
            await ledger.progress(tid, n)
        with pytest.raises(UnknownTransfer):
            await ledger.get("C" * 22)  # a read queued behind any write
        assert rows(db)[tid]["bytes_sent"] == 0  # none of the 1000 reports was written
        assert (await ledger.get(tid)).bytes_sent == 1000  # but this process knows
    async with SQLiteLedger(db, begin_delay=0, progress_interval=0) as ledger:
        tid = await ledger.begin("GET", "/p")
        await ledger.progress(tid, 42)
        with pytest.raises(UnknownTransfer):
            await ledger.get("C" * 22)
        assert rows(db)[tid]["bytes_sent"] == 42


async def _finished(ledger: SQLiteLedger, n: int, path: str) -> list[str]:
    ids = []
    for i in range(n):
        tid = await ledger.begin("GET", f"{path}/{i}")
        await ledger.finish(tid, "completed", i)
        ids.append(tid)
    return ids


async def test_retention_by_age_and_count_on_open(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db) as ledger:
        old = await _finished(ledger, 3, "/old")
        new = await _finished(ledger, 10, "/new")
        live = await ledger.begin("GET", "/live")
        await ledger.flush()
        with raw(db) as conn:
            conn.executemany(
                "UPDATE transfers SET ended_at = ? WHERE id = ?",
                [(time.time() - 7200, tid) for tid in old],
            )
        async with SQLiteLedger(db, max_age=3600, max_records=4):
            kept = rows(db)
        assert not set(old) & kept.keys()  # too old
        assert set(new[-4:]) <= kept.keys() and not set(new[:-4]) & kept.keys()  # too many
        assert kept[live]["state"] == "streaming"  # live transfers are never pruned


async def test_periodic_maintenance_prunes_without_reopening(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, max_records=2, maintenance_interval=0.05) as ledger:
        ids = await _finished(ledger, 6, "/x")
        await ledger.flush()  # folded from the journal
        await wait_until(lambda: len(rows(db)) <= 2)
        assert set(rows(db)) == set(ids[-2:])


async def test_kill_9_keeps_completed_and_interrupts_the_rest(
    tmp_path: Path, victim: Victim
) -> None:
    db = tmp_path / "l.db"
    proc, ids = victim("sqlite", str(db))
    # A second worker on the same file must not take the live worker's streams for dead.
    async with SQLiteLedger(db, maintenance_interval=0.05) as neighbour:
        for tid in ids["live"]:
            assert (await neighbour.get(tid)).state == "streaming"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        # ...but notices the death at its next maintenance run, without reopening
        deadline = time.monotonic() + 5
        while (await neighbour.get(ids["live"][0])).state == "streaming":
            assert time.monotonic() < deadline, "the dead worker's stream stayed streaming"
            await asyncio.sleep(0.02)
    async with SQLiteLedger(db) as reopened:
        done = await reopened.get(ids["done"])
        assert done.state == "completed" and done.digest == digest_of(b"the completed body")
        assert done.bytes_sent == len(b"the completed body")
        for tid in ids["live"]:
            rec = await reopened.get(tid)
            assert rec.state == "interrupted" and rec.bytes_sent == 300
            assert rec.ended_at is not None and rec.ended_at >= rec.started_at


async def test_kill_9_is_detected_on_next_open(tmp_path: Path, victim: Victim) -> None:
    db = tmp_path / "l.db"
    proc, ids = victim("sqlite", str(db))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    async with SQLiteLedger(db) as reopened:
        assert (await reopened.get(ids["done"])).state == "completed"
        assert {(await reopened.get(t)).state for t in ids["live"]} == {"interrupted"}


async def test_a_stalled_owner_is_retired_and_comes_back(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, heartbeat_interval=0.05, stale_after=1.0) as stalled:
        tid = await stalled.begin("GET", "/stuck")
        await stalled.flush()
        with raw(db) as conn:  # as if its heartbeat had stopped long ago
            conn.execute("UPDATE owners SET heartbeat_at = 0")
        async with SQLiteLedger(db) as other:
            assert (await other.get(tid)).state == "interrupted"
        with pytest.raises(InvalidTransition):
            await stalled.finish(tid, "completed", 0)
        deadline = time.monotonic() + 5
        while True:  # its next heartbeat registers it again, for its new transfers
            with raw(db) as conn:
                owners = [r[0] for r in conn.execute("SELECT id FROM owners")]
            if stalled.owner_id in owners:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def test_a_locked_store_fails_finish_cleanly_and_a_retry_works(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, busy_timeout=0.05, journal=False) as ledger:
        tid = await ledger.begin("GET", "/locked")
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(LedgerError, match="locked"):
                await ledger.finish(tid, "completed", 3)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await ledger.finish(tid, "completed", 3)
        assert rows(db)[tid]["state"] == "completed"


async def test_a_finish_never_waits_for_a_lock_on_the_loop(tmp_path: Path) -> None:
    """Finishes are committed on the loop, but a taken lock sends them to the writer."""
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, busy_timeout=5, journal=False) as ledger:
        tid = await ledger.begin("GET", "/locked")
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")
        finishing = asyncio.create_task(ledger.finish(tid, "completed", 3))
        ticks, start = 0, time.monotonic()
        while time.monotonic() - start < 0.3:  # the loop goes on meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 10 and not finishing.done()
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.wait_for(finishing, 10)
        assert rows(db)[tid]["state"] == "completed"


async def test_many_finishes_on_the_loop_share_commits_and_the_writer_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints: list[tuple[int, int, int]] = []

    def checkpoint(conn: sqlite3.Connection) -> None:
        checkpoints.append(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())

    monkeypatch.setattr(sqlite_backend, "_checkpoint", checkpoint)
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, journal=False) as ledger:

        async def one() -> None:
            tid = await ledger.begin("GET", "/many")
            await ledger.finish(tid, "completed", 1)

        await asyncio.gather(*(one() for _ in range(300)))
        assert ledger._inline_commits <= 10  # one per turn of the loop, not one per finish
        for _ in range(600):
            await one()
        await ledger.flush()
        assert len(rows(db)) == 900
        # The loop's connection never checkpoints; the writer did, without blocking.
        assert len(checkpoints) == 1 and checkpoints[0][0] == 0 and checkpoints[0][2] > 0


async def test_a_cancelled_finish_on_the_direct_path_is_still_recorded(tmp_path: Path) -> None:
    """Without the journal: the first of a turn commits at once, the second is cancelled
    while it waits for the end of the turn, and is committed all the same."""
    async with SQLiteLedger(tmp_path / "l.db", journal=False) as ledger:
        tids = [await ledger.begin("GET", f"/x/{i}") for i in range(2)]
        tasks = [asyncio.create_task(ledger.finish(tid, "completed", 7)) for tid in tids]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        await asyncio.gather(tasks[0], return_exceptions=True)
        await ledger.flush()
        assert {rows(tmp_path / "l.db")[tid]["state"] for tid in tids} == {"completed"}


async def test_a_lone_finish_is_committed_at_once_without_a_turn_of_the_loop(
    tmp_path: Path,
) -> None:
    """A serial client waits for no timer and no extra turn: the finish never suspends."""
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, commit_delay=3600, journal=False) as ledger:
        tid = await ledger.begin("GET", "/serial")
        step = ledger.finish(tid, "completed", 3, digest=digest_of(b"abc"))
        with pytest.raises(StopIteration):
            step.send(None)  # it ran to the end in one step: committed before returning
        assert rows(db)[tid]["state"] == "completed"
        # The next turn of the loop starts afresh: again at once.
        await asyncio.sleep(0)
        other = await ledger.begin("GET", "/serial")
        step = ledger.finish(other, "failed", 1, error=RuntimeError("boom"))
        with pytest.raises(StopIteration):
            step.send(None)
        assert rows(db)[other]["error_class"] == "RuntimeError"


async def test_after_a_burst_the_first_finish_of_a_turn_waits_to_share_its_commit(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, commit_delay=3600, journal=False) as ledger:
        burst = [await ledger.begin("GET", f"/burst/{i}") for i in range(3)]
        await asyncio.gather(*(ledger.finish(tid, "completed", 1) for tid in burst))
        commits = ledger._inline_commits
        assert commits == 2  # the first at once, the other two together at the turn's end
        # The last turn had company: the next first finish waits for the end of its turn.
        tid = await ledger.begin("GET", "/after-burst")
        task = asyncio.create_task(ledger.finish(tid, "completed", 1))
        await asyncio.sleep(0)
        assert not task.done()  # waiting for the end of the turn, with its future
        await task
        assert ledger._inline_commits == commits + 1
        # That turn had it alone: from the next one on, at once again.
        tid = await ledger.begin("GET", "/alone")
        step = ledger.finish(tid, "completed", 1)
        with pytest.raises(StopIteration):
            step.send(None)
        assert all(rows(db)[t]["state"] == "completed" for t in [*burst, tid])


async def test_a_finish_that_ends_a_row_already_final_fails_at_once(tmp_path: Path) -> None:
    """The commit at once keeps the rule: a row another worker ended stays as it is."""
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, begin_delay=0) as ledger:
        tid = await ledger.begin("GET", "/retired")
        await ledger.flush()
        with raw(db) as conn:
            conn.execute("UPDATE transfers SET state = 'interrupted' WHERE id = ?", (tid,))
        with pytest.raises(InvalidTransition, match="interrupted"):
            await ledger.finish(tid, "completed", 1)
        assert rows(db)[tid]["state"] == "interrupted"


async def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        await SQLiteLedger(tmp_path / "missing" / "l.db").open()
    db = tmp_path / "future.db"
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match="newer"):
        await SQLiteLedger(db).open()
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        await SQLiteLedger(tmp_path / "junk.db").open()


@pytest.mark.parametrize(
    "options",
    [
        {"max_age": -1},
        {"max_records": 0},
        {"max_records": True},
        {"heartbeat_interval": 0},
        {"heartbeat_interval": 10, "stale_after": 5},
        {"synchronous": "OFF"},
        {"begin_delay": float("nan")},
    ],
)
def test_bad_options(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SQLiteLedger(tmp_path / "l.db", **options)


def test_ledger_from_url(tmp_path: Path) -> None:
    assert isinstance(ledger_from_url(f"sqlite://{tmp_path}/a.db"), SQLiteLedger)
    assert ledger_from_url(f"sqlite://{tmp_path}/a.db").path == tmp_path / "a.db"  # type: ignore[attr-defined]
    assert ledger_from_url("sqlite:rel.db").path == Path("rel.db")  # type: ignore[attr-defined]
    assert isinstance(ledger_from_url(str(tmp_path / "b.db")), SQLiteLedger)
    assert isinstance(ledger_from_url("redis://127.0.0.1:1/0"), RedisLedger)
    for bad in ("sqlite://relative.db", "sqlite:", "postgres://x/y"):
        with pytest.raises(ConfigError):
            ledger_from_url(bad)


async def test_one_failing_write_does_not_sink_its_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, begin_delay=0, commit_delay=0.05) as ledger:
        tid = await ledger.begin("GET", "/neighbour")  # its insert joins the same batch
        ledger._enqueue(_Op(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"), None))
        await ledger.finish(tid, "completed", 1)
        assert rows(db)[tid]["state"] == "completed"
    assert "ledger write failed" in caplog.text and "no_such_table" in caplog.text


async def test_unknown_ids_do_not_wait_the_whole_settle_timeout(tmp_path: Path) -> None:
    async with SQLiteLedger(tmp_path / "l.db", settle_timeout=30) as ledger:
        start = time.monotonic()
        with pytest.raises(UnknownTransfer):
            await ledger.receipt("D" * 22, 1, digest_of(b""))
        assert time.monotonic() - start < 10  # a short grace, not 30 s


WORKER = """
import asyncio, sys
from sluicegate.ledger import SQLiteLedger

async def main():
    async with SQLiteLedger(sys.argv[1], commit_delay=0.001) as ledger:
        for i in range(100):
            tid = await ledger.begin("GET", "/w")
            await ledger.progress(tid, i)
            await ledger.finish(tid, "completed", i)

asyncio.run(main())
"""


def test_several_worker_processes_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "l.db"  # created by whichever worker gets there first
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(db)], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    try:
        errors = [w.communicate(timeout=60)[1] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(5)
    assert [w.returncode for w in workers] == [0, 0, 0], errors
    with raw(db) as conn:
        by_state = conn.execute("SELECT state, count(*) FROM transfers GROUP BY state")
        assert [tuple(row) for row in by_state] == [("completed", 300)]
        assert conn.execute("SELECT count(*) FROM owners").fetchone()[0] == 0
