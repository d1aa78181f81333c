"""The SQLite ledger's journal: a short transfer's finish is one appended line, folded later.

What it must keep: a finish that returned survives ``kill -9`` (the line is in the page
cache), every reader sees the record at once (this instance through its writer's queue,
another instance through the journal files), recovery folds a dead worker's journal and
skips a line a crash tore, and a journal that fails hands the finish to the direct path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sluicegate.ledger.sqlite as sqlite_backend
from sluicegate.ledger import SQLiteLedger, TransferRecord, digest_of, new_transfer_id
from sluicegate.ledger.model import ErrorInfo
from sluicegate.ledger.sqlite import _journal_line, _parse_journal_line, _read_journal
from tests.ledger.test_ledger_sqlite import Victim, raw, rows

BODY = b"the completed body"


def journals(db: Path) -> list[Path]:
    return sorted(db.parent.glob(f"{db.name}.*.journal"))


def lines(db: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in journals(db))


async def test_a_short_finish_is_one_journal_line_that_every_reader_sees(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=3600) as ledger:
        tid = await ledger.begin("GET", "/small", size=len(BODY))
        await ledger.finish(tid, "completed", len(BODY), digest=digest_of(BODY))
        assert tid not in rows(db) and lines(db) == 1  # durable, not yet folded
        async with SQLiteLedger(db) as other:  # another worker: reads the journal
            record = await other.get(tid)
            assert record.state == "completed" and record.digest == digest_of(BODY)
            verdict = await other.receipt(tid, len(BODY), digest_of(BODY))
            assert verdict.verified
        assert rows(db)[tid]["receipt_verified"] == 1  # the receipt folded it first
        # This instance reads through its writer: the fold goes first, then the read.
        other_tid = await ledger.begin("GET", "/small")
        await ledger.finish(other_tid, "failed", 3, error=OSError("disk full"))
        record = await ledger.get(other_tid)
        assert record.state == "failed" and record.error == ErrorInfo("OSError", "disk full")
        assert rows(db)[other_tid]["state"] == "failed"
    assert journals(db) == []  # everything folded: close deleted it


@pytest.mark.parametrize("with_json", [True, False])
async def test_the_fold_is_one_statement_for_many_finishes(tmp_path: Path, with_json: bool) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=0.05) as ledger:
        ledger._fold_json = with_json  # False: as with a SQLite built without JSON

        async def one(i: int) -> str:
            tid = await ledger.begin("GET", f"/many/{i}")
            await ledger.finish(tid, "completed", 1)
            return tid

        tids = [await one(i) for i in range(200)]
        assert lines(db) == 200
        for _ in range(250):
            if len(rows(db)) == 200:
                break
            await asyncio.sleep(0.02)
        assert set(rows(db)) == set(tids)
        stored = rows(db)[tids[7]]
        assert (stored["state"], stored["bytes_sent"]) == ("completed", 1)
        assert stored["path"] == "/many/7"
        assert stored["owner"] == ledger.owner_id and stored["ended_at"] >= stored["started_at"]


async def test_a_full_fold_goes_to_the_writer_without_waiting_for_its_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "_FOLD_MAX", 50)
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=3600) as ledger:
        for i in range(120):
            tid = await ledger.begin("GET", f"/full/{i}")
            await ledger.finish(tid, "completed", 1)
        for _ in range(250):
            if len(rows(db)) == 100:  # two full folds; the last 20 wait for the delay
                break
            await asyncio.sleep(0.02)
        assert len(rows(db)) == 100 and lines(db) == 120


async def test_a_finish_the_client_waits_for_survives_kill_9_in_the_journal_only(
    tmp_path: Path, victim: Victim
) -> None:
    db = tmp_path / "l.db"
    proc, ids = victim("sqlite-journal", str(db))
    assert ids["done"] not in rows(db) and lines(db) == 1  # only in the journal
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    async with SQLiteLedger(db) as reopened:
        record = await reopened.get(ids["done"])
        assert record.state == "completed" and record.digest == digest_of(BODY)
        assert record.bytes_sent == len(BODY) and record.size == len(BODY)
    assert rows(db)[ids["done"]]["state"] == "completed"  # folded by recovery
    assert journals(db) == []  # ...which then deleted the dead worker's journal


def _dead_owner_journal(db: Path, content: bytes) -> Path:
    path = db.with_name(f"{db.name}.{'0' * 16}.1.journal")  # no such owner: a dead one
    path.write_bytes(content)
    return path


def _record(state: str = "completed", **fields: Any) -> TransferRecord:
    now = time.time()  # not older than max_age: the open's pruning would take it
    begun = TransferRecord.started(new_transfer_id(), "GET", "/j", size=10, at=now - 1)
    return begun.finished(state, 10, at=now, **fields)  # type: ignore[arg-type]


async def test_recovery_skips_a_torn_last_line_and_a_damaged_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db):
        pass  # the schema
    good, damaged, torn = _record(), _record("failed"), _record()
    bad = bytearray(_journal_line(damaged))
    bad[20] ^= 0x01  # one flipped bit: the checksum no longer matches
    whole = _journal_line(torn)
    _dead_owner_journal(db, _journal_line(good) + bytes(bad) + whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, "sluicegate.ledger"):
        async with SQLiteLedger(db) as ledger:
            assert (await ledger.get(good.id)).state == "completed"
    stored = rows(db)
    assert good.id in stored and damaged.id not in stored and torn.id not in stored
    assert "skipped 2 damaged or torn line(s)" in caplog.text
    assert journals(db) == []


async def test_a_live_workers_journal_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=3600) as first:
        tid = await first.begin("GET", "/mine")
        await first.finish(tid, "completed", 0)
        async with SQLiteLedger(db, maintenance_interval=0.01) as second:
            await asyncio.sleep(0.1)  # several maintenance runs
            assert lines(db) == 1 and tid not in rows(db)  # not folded by the neighbour
            assert (await second.get(tid)).state == "completed"


async def test_the_journal_rotates_and_old_ones_go_once_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "_JOURNAL_ROTATE", 2000)  # about a dozen lines
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=0) as ledger:
        tids = []
        for i in range(100):
            tids.append(tid := await ledger.begin("GET", f"/r/{i}"))
            await ledger.finish(tid, "completed", i)
        await ledger.flush()
        assert ledger._journal_gen > 5
        assert len(journals(db)) <= 2  # the current one, and perhaps one being retired
        assert set(rows(db)) == set(tids)


async def test_a_failing_journal_hands_finishes_to_the_direct_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, fold_delay=3600) as ledger:
        written: list[bytes] = []

        def short_write(fd: int, data: bytes) -> int:  # a disk that filled mid-line
            written.append(data)
            return len(data) // 2

        monkeypatch.setattr(sqlite_backend.os, "write", short_write)
        tid = await ledger.begin("GET", "/full")
        with caplog.at_level(logging.WARNING, "sluicegate.ledger"):
            await ledger.finish(tid, "completed", 4)
        monkeypatch.undo()
        assert written and "short write" in caplog.text
        assert rows(db)[tid]["state"] == "completed"  # committed directly before returning
        assert ledger._journal_fd is None  # no more appends after a torn one
        later = await ledger.begin("GET", "/after")
        await ledger.finish(later, "completed", 1)
        assert rows(db)[later]["state"] == "completed"


async def test_no_journal_when_it_could_not_keep_the_promise(tmp_path: Path) -> None:
    """FULL promises power loss, which a page-cache append does not survive; a long
    transfer's row exists, so its finish may be refused and goes to SQLite directly."""
    db = tmp_path / "l.db"
    async with SQLiteLedger(db, synchronous="FULL") as full:
        tid = await full.begin("GET", "/full")
        await full.finish(tid, "completed", 1)
        assert journals(db) == [] and rows(db)[tid]["state"] == "completed"
    async with SQLiteLedger(db, commit_before_end=False) as late:
        assert late._journal_fd is None
    async with SQLiteLedger(db, begin_delay=0, fold_delay=3600) as ledger:
        tid = await ledger.begin("GET", "/long")
        await ledger.finish(tid, "completed", 1)
        assert rows(db)[tid]["state"] == "completed" and lines(db) == 0


def test_the_journal_option_is_validated(tmp_path: Path) -> None:
    from sluicegate.errors import ConfigError

    with pytest.raises(ConfigError, match="journal"):
        SQLiteLedger(tmp_path / "l.db", journal="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fold_delay"):
        SQLiteLedger(tmp_path / "l.db", fold_delay=-1)


_text = st.text(max_size=40)


@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    path=_text,
    state=st.sampled_from(["completed", "failed", "client_gone", "timed_out", "interrupted"]),
    sent=st.integers(0, 2**53),
    error=st.none() | st.tuples(_text.filter(bool), _text),
)
def test_a_journal_line_round_trips_and_no_torn_prefix_parses(
    method: str, path: str, state: str, sent: int, error: tuple[str, str] | None
) -> None:
    begun = TransferRecord.started(new_transfer_id(), method, "/" + path, size=None, at=5.5)
    final = begun.finished(state, sent, at=6.25)  # type: ignore[arg-type]
    # The line must carry any text: an error's class and message, set as they are.
    final = replace(final, error=None if error is None else ErrorInfo(*error))
    line = _journal_line(final)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert _parse_journal_line(line[:-1]) == final
    for cut in range(len(line) - 1):
        assert _parse_journal_line(line[:cut]) is None


def test_reading_a_journal_that_is_gone_or_empty(tmp_path: Path) -> None:
    assert _read_journal(tmp_path / "gone.journal") == []
    (tmp_path / "empty.journal").write_bytes(b"")
    assert _read_journal(tmp_path / "empty.journal") == []


def test_the_journal_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "l.db"

    async def run() -> None:
        async with SQLiteLedger(db, fold_delay=3600) as ledger:
            tid = await ledger.begin("GET", "/p")
            await ledger.finish(tid, "completed", 0)
            (path,) = journals(db)
            assert path.stat().st_mode & 0o077 == 0

    asyncio.run(run())


def test_sqlite_still_reads_the_row_plainly(tmp_path: Path) -> None:
    """Folded rows are ordinary rows: nothing about the journal leaks into the schema."""
    db = tmp_path / "l.db"

    async def run() -> str:
        async with SQLiteLedger(db) as ledger:
            tid = await ledger.begin("GET", "/plain")
            await ledger.finish(tid, "completed", 2)
            return tid

    tid = asyncio.run(run())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT state FROM transfers WHERE id = ?", (tid,)).fetchone() == (
            "completed",
        )


async def test_a_stalled_owner_whose_journal_was_folded_starts_a_new_one(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    async with SQLiteLedger(
        db, heartbeat_interval=0.05, stale_after=1.0, fold_delay=3600
    ) as stalled:
        first = await stalled.begin("GET", "/before")
        await stalled.finish(first, "completed", 1)
        (old,) = journals(db)
        with raw(db) as conn:  # as if its heartbeat had stopped long ago
            conn.execute("UPDATE owners SET heartbeat_at = 0")
        async with SQLiteLedger(db):
            pass  # judged it dead: folded its journal and deleted it
        assert rows(db)[first]["state"] == "completed" and not old.exists()
        for _ in range(250):  # its next heartbeat notices, and the next finish rotates
            if stalled._journal_lost:
                break
            await asyncio.sleep(0.02)
        later = await stalled.begin("GET", "/after")
        await stalled.finish(later, "completed", 2)
        (new,) = journals(db)
        assert new != old and later.encode() in new.read_bytes()
        async with SQLiteLedger(db) as reader:
            assert (await reader.get(later)).state == "completed"


async def test_a_record_folded_between_the_two_looks_of_another_reader_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader finds no row; before it scans the journals, the owner folds the record
    # and deletes its journal. The reader must still find it (in the table, now).
    db = tmp_path / "l.db"
    find = sqlite_backend._find_in_journals

    def owner_folds_first(path: Path, transfer_id: str) -> Any:
        # What the owner's writer does: fold every line, commit, then delete the file.
        with sqlite3.connect(db) as conn:
            for journal, owner in sqlite_backend._journals(db):
                for record in _read_journal(journal):
                    sqlite_backend._write_final(conn, record, owner)
        for journal in journals(db):
            journal.unlink()
        return find(path, transfer_id)

    async with SQLiteLedger(db, fold_delay=3600) as ledger:
        tid = await ledger.begin("GET", "/small", size=len(BODY))
        await ledger.finish(tid, "completed", len(BODY), digest=digest_of(BODY))
        receipt_tid = await ledger.begin("GET", "/small", size=len(BODY))
        await ledger.finish(receipt_tid, "completed", len(BODY), digest=digest_of(BODY))
        monkeypatch.setattr(sqlite_backend, "_find_in_journals", owner_folds_first)
        async with SQLiteLedger(db) as other:
            assert (await other.get(tid)).state == "completed"
            assert (await other.receipt(receipt_tid, len(BODY), digest_of(BODY))).verified
