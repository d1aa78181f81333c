"""The embedded ledger: one SQLite file in WAL mode, shared by the workers of one machine.

SQLite work happens on one writer thread per ledger. The event loop hands it work in
batches (writes wait up to ``commit_delay`` for company) and the thread commits each batch
in one transaction (group commit), so many concurrent streams cost few commits and thread
wake-ups.

The finishes that responses wait for (``commit_before_end``, with
``synchronous="NORMAL"``) are where the time goes, so they take a shorter path:

* **A short transfer's finish is one line appended to a journal** (a file per ledger
  instance next to the database, ``<db>.<owner>.<n>.journal``), and the writer thread
  folds the lines into SQLite ``fold_delay`` later, hundreds in one commit (see
  :meth:`SQLiteLedger._journal_append`). Why: on a server, a SQLite commit of one record
  cost about 100 µs of CPU per response on the development VM (7 ``pwrite`` and 6
  ``fcntl`` calls, and the caches it evicts), against a 10 % budget of about 55 µs; the
  append is one ``write`` (≈ 4 µs to build the line, < 1 µs to write it, in a tight
  loop). It is as durable as the commit it replaces: in the page cache when ``write``
  returns, so it survives ``kill -9`` (not a power loss, which ``synchronous="FULL"`` is
  for, and which never journals). Every reader sees the record at once: this instance's
  reads queue behind the fold, another instance reads the journals when the file has no
  row, and recovery (on open and every ``maintenance_interval``) folds the journals of
  dead owners before it retires their streams. A line carries a CRC-32: a line a crash
  tore is skipped. Only transfers whose begin was never written use it (they ended
  within ``begin_delay``): no other worker can have ended a row that does not exist, so
  a journaled finish is never refused later.
* Otherwise (a long transfer, ``journal=False``, or a journal that failed) the finish is
  committed on the loop, because with ``synchronous="NORMAL"`` a commit is a WAL append
  without fsync and cheaper than the trip to the thread and back: the first of a turn of
  the loop at once when finishes come alone (a serial client waits for no timer and no
  extra turn), the finishes of a busy turn together at its end; the loop never waits for
  a lock or a checkpoint (see :meth:`SQLiteLedger._submit_inline`)::

    async with SQLiteLedger("/var/lib/app/transfers.db") as ledger:
        tid = await ledger.begin("GET", "/big.iso", size=4_700_000_000)
        ...

Durability, in short (details in ``docs/guides/ledger.md``):

* :meth:`~SQLiteLedger.finish` and receipts return once committed (or journaled): they
  survive ``kill -9`` of the process (and power loss too with ``synchronous="FULL"``). With
  ``commit_before_end`` (the default) a response's end waits for that commit, so a
  client never holds a whole body whose ``completed`` record is not yet on disk.
* :meth:`~SQLiteLedger.begin` is not awaited to disk: the row is written ``begin_delay``
  seconds later, or together with the final state if the transfer ends first. A process
  killed within that window leaves no record of the transfer at all.
* progress reaches the file at most every ``progress_interval`` seconds.

Each ledger registers an *owner* row (host, pid, process start time, heartbeat). On open
and every ``maintenance_interval``, streaming rows whose owner is dead (its process is gone,
or its heartbeat is older than ``stale_after``) become ``interrupted``; the streams of
live workers sharing the file are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.ledger.base import Ledger, LiveTransfer
from sluicegate.ledger.model import (
    ErrorInfo,
    InvalidTransition,
    Receipt,
    StateName,
    TransferRecord,
    TransferState,
    new_transfer_id,
)
from sluicegate.ledger.procinfo import process_alive, process_started

__all__ = ["SQLiteLedger"]

log = logging.getLogger("sluicegate.ledger")

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS owners (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    proc_started  REAL NOT NULL,
    heartbeat_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('streaming', 'completed', 'failed',
                                                    'client_gone', 'timed_out', 'interrupted')),
    started_at       REAL NOT NULL,
    ended_at         REAL,
    bytes_sent       INTEGER NOT NULL DEFAULT 0 CHECK (bytes_sent >= 0),
    size             INTEGER CHECK (size >= 0),
    digest           TEXT,
    error_class      TEXT,
    error_message    TEXT,
    receipt_bytes    INTEGER,
    receipt_digest   TEXT,
    receipt_at       REAL,
    receipt_verified INTEGER,
    receipt_reason   TEXT
);
CREATE INDEX IF NOT EXISTS transfers_ended ON transfers (ended_at) WHERE state != 'streaming';
CREATE INDEX IF NOT EXISTS transfers_live ON transfers (owner) WHERE state = 'streaming';
"""
_COLUMNS: Final = (
    "id, method, path, state, started_at, ended_at, bytes_sent, size, digest, error_class,"
    " error_message, receipt_bytes, receipt_digest, receipt_at, receipt_verified, receipt_reason"
)
_INSERT: Final = (
    "INSERT INTO transfers (id, owner, method, path, state, started_at, ended_at, bytes_sent,"
    " size, digest, error_class, error_message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# One statement for both cases: the begin row may or may not have been written yet. The
# WHERE keeps a final row final even if another worker marked it interrupted meanwhile.
_UPSERT_FINAL: Final = (
    _INSERT + " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
    " ended_at = excluded.ended_at, bytes_sent = excluded.bytes_sent, digest = excluded.digest,"
    " error_class = excluded.error_class, error_message = excluded.error_message"
    " WHERE transfers.state = 'streaming'"
)
# The journal's lines folded in one statement: the line's JSON array, field by field.
_FOLD_JSON: Final = (
    "INSERT INTO transfers (id, owner, method, path, state, started_at, ended_at, bytes_sent,"
    " size, digest, error_class, error_message) SELECT json_extract(value, '$[0]'), ?,"
    + ",".join(f" json_extract(value, '$[{i}]')" for i in range(1, 11))
    + " FROM json_each(?) WHERE true"
    + _UPSERT_FINAL[len(_INSERT) :]
)
_BATCH_MAX: Final = 1024
# Least seconds between two readings of the followed counters (progress_interval may be 0).
_POLL_FLOOR: Final = 0.05
# Inline commits between two checkpoints the writer thread runs (see _commit_inline).
_CHECKPOINT_EVERY: Final = 500
# Bytes after which a journal is set aside for a new one (about 350 short records);
# the writer deletes the old one once every record in it is folded into the file.
_JOURNAL_ROTATE: Final = 64 << 10
_JOURNAL_SUFFIX: Final = ".journal"
# Most journaled finishes waiting for one fold; more go to the writer at once.
_FOLD_MAX: Final = 4096


class _Op:
    """One unit of work for the writer thread, with the future that awaits it (if any)."""

    __slots__ = ("fn", "fut", "ok", "stop", "value", "write")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        fut: asyncio.Future[Any] | None,
        *,
        write: bool = True,
        stop: bool = False,
    ) -> None:
        self.fn = fn
        self.fut = fut
        self.write = write
        self.stop = stop
        self.ok = True
        self.value: Any = None


class SQLiteLedger(Ledger):
    """The ledger in one SQLite file; safe for several worker processes on one machine.

    :param path: the database file; its directory must exist.
    :param max_age: seconds a finished record is kept.
    :param max_records: most finished records kept; the oldest go first.
    :param progress_interval: least seconds between two progress writes of one transfer.
    :param begin_delay: seconds before a new transfer's row is written; a transfer that
        ends sooner costs one write instead of two. ``0`` writes it at once.
    :param heartbeat_interval: seconds between this instance's signs of life.
    :param stale_after: seconds without a heartbeat after which an owner counts as dead,
        even if a process with its pid still runs.
    :param maintenance_interval: seconds between recovery and pruning runs (also on open).
    :param synchronous: ``"NORMAL"`` survives process crashes; ``"FULL"`` also power loss.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param commit_delay: seconds the writer lets work gather before each commit of
        writes nobody waits for (begins, progress, and finishes when
        ``commit_before_end`` is off). Under load, one commit and one wake-up of the
        event loop then serve many transfers. ``0`` commits at once.
    :param commit_before_end: hold each response's end until its record is committed
        (see :class:`~sluicegate.ledger.Ledger`). A finish is then committed at once
        rather than after ``commit_delay``, because a client waits for it; finishes that
        arrive while the writer is busy still share one commit.
    :param journal: with ``commit_before_end`` and ``synchronous="NORMAL"``, make a short
        transfer's finish durable by appending it to this instance's journal file
        instead of committing it (see the module's docstring); ``False`` commits every
        finish to SQLite directly.
    :param fold_delay: seconds journaled finishes wait before the writer folds them into
        SQLite (one commit for all of them). Other workers read them from the journal
        meanwhile.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: float = 7 * 24 * 3600.0,
        max_records: int = 100_000,
        progress_interval: float = 1.0,
        begin_delay: float = 0.05,
        heartbeat_interval: float = 5.0,
        stale_after: float = 60.0,
        maintenance_interval: float = 300.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 5.0,
        commit_delay: float = 0.005,
        settle_timeout: float = 1.0,
        commit_before_end: bool = True,
        journal: bool = True,
        fold_delay: float = 0.25,
    ) -> None:
        super().__init__(settle_timeout=settle_timeout, commit_before_end=commit_before_end)
        for name, value in (
            ("commit_delay", commit_delay),
            ("fold_delay", fold_delay),
            ("max_age", max_age),
            ("progress_interval", progress_interval),
            ("begin_delay", begin_delay),
            ("busy_timeout", busy_timeout),
        ):
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0")
        for name, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("maintenance_interval", maintenance_interval),
        ):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0")
        if not stale_after > heartbeat_interval:
            raise ConfigError("stale_after must be longer than heartbeat_interval")
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ConfigError("max_records must be a positive integer")
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("synchronous must be 'NORMAL' or 'FULL'")
        if not isinstance(journal, bool):
            raise ConfigError("journal must be True or False")
        self.path = Path(path)
        self.max_age = max_age
        self.max_records = max_records
        self.progress_interval = progress_interval
        self.begin_delay = begin_delay
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.maintenance_interval = maintenance_interval
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.commit_delay = commit_delay
        self.journal = journal
        self.fold_delay = fold_delay
        #: this instance's row in ``owners``: its streaming transfers carry it
        self.owner_id = secrets.token_hex(8)
        # Begun here, row not yet written; oldest first, so a sweep stops at the first young one.
        self._pending: OrderedDict[str, LiveTransfer] = OrderedDict()
        self._sweeper: asyncio.TimerHandle | None = None
        # Reads the followed counters of written transfers (see _poll_progress).
        self._poller: asyncio.TimerHandle | None = None
        # The loop collects ops in an outbox and hands them over in lists: one wake-up of
        # the writer per batch, not per op (a thread wake-up costs tens of µs of CPU).
        self._queue: queue.SimpleQueue[list[_Op]] = queue.SimpleQueue()
        self._outbox: list[_Op] = []
        self._handoff_timer: asyncio.TimerHandle | None = None
        self._handoff_due = 0.0
        self._handoff_soon = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken: BaseException | None = None
        # Finishes a response waits for, committed on the loop (see _commit_inline).
        self._inline: sqlite3.Connection | None = None
        self._inline_batch: list[tuple[TransferRecord, asyncio.Future[None]]] = []
        self._inline_commits = 0
        # Finishes a response waits for in this turn of the loop, and whether the last
        # turn that had any had just one (then the first of a turn commits at once).
        self._turn_finishes = 0
        self._alone = True
        # The journal a short transfer's finish is appended to (see _journal_append).
        self._journal_fd: int | None = None
        self._journal_path: Path | None = None
        self._journal_gen = 0
        self._journal_size = 0
        # Set by the writer thread: a fold failed (keep the journals for recovery), or
        # another worker retired this owner (and may have deleted its journal).
        self._fold_failed = False
        self._journal_lost = False
        # Lines journaled since the last handoff, and the op queued to fold them.
        self._folds: list[bytes] | None = None
        # SQLite has JSON functions (see _folder); the writer thread checks on open.
        self._fold_json = True
        # Journals of dead owners folded in the open transaction: deleted after COMMIT.
        self._folded_journals: list[Path] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def _open(self) -> None:
        if not self.path.parent.is_dir():
            raise ConfigError(f"no such directory: {self.path.parent}")
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready,), name=f"sluicegate-ledger-{self.owner_id}"
        )
        self._thread.daemon = True  # a forgotten close() must not hang interpreter exit
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            raise
        if self.commit_before_end and self.synchronous == "NORMAL":
            try:
                self._inline = _connect_inline(self.path)
            except sqlite3.Error as exc:  # the writer thread's connection still works
                log.warning("ledger finishes go through the writer thread: %s", exc)
            if self.journal:
                try:
                    self._open_journal()
                except OSError as exc:
                    log.warning("no ledger journal, finishes are committed directly: %s", exc)

    async def _close(self) -> None:
        self._commit_inline()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        self._close_journal()
        now = time.time()
        leftovers = list(self._live.values())
        self._live.clear()
        self._pending.clear()
        for timer in (self._sweeper, self._poller):
            if timer is not None:
                timer.cancel()
        for live in leftovers:
            final = live.snapshot().finished("interrupted", live.bytes_sent, at=now)
            self._enqueue(_Op(self._final_writer(final), None))
        owner = self.owner_id
        self._enqueue(_Op(lambda c: c.execute("DELETE FROM owners WHERE id = ?", (owner,)), None))
        assert self._loop is not None and self._thread is not None
        if not self._thread.is_alive():
            return
        done: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(_Op(lambda c: None, done, stop=True))
        self._handoff()
        try:
            await done
        finally:
            await asyncio.to_thread(self._thread.join)

    # -- the contract --------------------------------------------------------------------

    async def begin(self, method: str, path: str, *, size: int | None = None) -> str:
        """Record a new streaming transfer and return its id (see :meth:`Ledger.begin`)."""
        self._check_open()
        tid = new_transfer_id()
        record = TransferRecord.started(tid, method, path, size=size, at=time.time())
        live = self._live[tid] = LiveTransfer(record, time.monotonic())
        if self.begin_delay > 0:
            # One timer for all pending begins, not one per transfer: begin stays cheap.
            self._pending[tid] = live
            if self._sweeper is None:
                assert self._loop is not None
                self._sweeper = self._loop.call_later(self.begin_delay, self._sweep)
        else:
            self._persist_begin(live)
        return tid

    async def progress(self, transfer_id: str, bytes_sent: int) -> None:
        """Note progress; written at most every ``progress_interval``.

        See :meth:`Ledger.progress`.
        """
        live = self._live.get(transfer_id)
        if live is None:
            return
        if type(bytes_sent) is not int or bytes_sent < 0:
            raise ConfigError("bytes_sent must be a non-negative integer")
        if bytes_sent <= live.bytes_sent:
            return
        live.bytes_sent = bytes_sent
        if live.persisted:
            now = time.monotonic()
            if now - live.flushed_at >= self.progress_interval:
                self._store_progress(live, now)

    async def finish(
        self,
        transfer_id: str,
        state: TransferState | StateName,
        bytes_sent: int,
        *,
        digest: str | None = None,
        error: BaseException | ErrorInfo | None = None,
    ) -> None:
        """Record the end of a transfer; returns once committed (see :meth:`Ledger.finish`)."""
        self._check_open()
        live = self._live.get(transfer_id)
        if live is None:
            # Not ours, or not any more: check and write in one transaction.
            await self._submit(
                self._remote_finisher(transfer_id, state, bytes_sent, digest, error, time.time())
            )
            return
        # live.record still says 0 bytes: one copy less than snapshot() on the hot path.
        final = live.record.finished(state, bytes_sent, digest=digest, error=error, at=time.time())
        if bytes_sent < live.bytes_sent:
            raise InvalidTransition(f"bytes_sent went down from {live.bytes_sent} to {bytes_sent}")
        del self._live[transfer_id]
        self._pending.pop(transfer_id, None)
        if self._journal_fd is not None and not live.persisted and self._journal_append(final):
            return
        try:
            if self._inline is not None:
                await self._submit_inline(final)
            else:
                # A response's end waits for this commit: no commit_delay then.
                await self._submit(self._final_writer(final), urgent=self.commit_before_end)
        except LedgerError as exc:
            if not isinstance(exc, InvalidTransition):
                # The store failed, not the rules: keep the transfer live so that a retry,
                # flush() or close() can still record it.
                self._live[transfer_id] = live
            raise

    async def get(self, transfer_id: str) -> TransferRecord:
        """The record, from memory if it streams here, else from the file."""
        self._check_open()
        live = self._live.get(transfer_id)
        if live is not None:
            return live.snapshot()
        result: TransferRecord = await self._submit(self._reader(transfer_id), write=False)
        return result

    def _reader(self, transfer_id: str) -> Callable[[sqlite3.Connection], TransferRecord]:
        return lambda conn: _read(conn, transfer_id, self.path)

    async def flush(self) -> None:
        """Write pending begins and the latest progress, and wait for the commit."""
        self._check_open()
        for live in self._live.values():
            if not live.persisted:
                self._persist_begin(live)
            else:
                live.sent()
                self._store_progress(live, time.monotonic())
        await self._submit(lambda c: None)

    def _store_progress(self, live: LiveTransfer, now: float) -> None:
        """Queue the write of ``live``'s byte count as it stands."""
        live.flushed_at = now
        live.stored = live.bytes_sent
        self._enqueue(_Op(_progress_writer(live.record.id, live.bytes_sent), None))

    async def _attach_receipt(
        self, transfer_id: str, expected: TransferState, receipt: Receipt
    ) -> bool:
        path = self.path

        def attach(conn: sqlite3.Connection) -> bool:
            if update(conn):
                return True
            # Perhaps only in another live worker's journal yet: fold it here (the same
            # upsert its owner will run, which then changes nothing), then attach.
            found = _find_in_journals(path, transfer_id)
            if found is None:
                # Folded by its owner since the first look (the fold commits before
                # the journal goes): the row is there now if anywhere.
                return update(conn)
            if found[0].state != expected:
                return False
            _write_final(conn, found[0], found[1])
            return update(conn)

        def update(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE transfers SET receipt_bytes = ?, receipt_digest = ?, receipt_at = ?,"
                " receipt_verified = ?, receipt_reason = ? WHERE id = ? AND state = ?",
                (
                    receipt.bytes_received,
                    receipt.digest,
                    receipt.received_at,
                    int(receipt.verified),
                    receipt.reason,
                    transfer_id,
                    expected,
                ),
            )
            return cur.rowcount == 1

        result: bool = await self._submit(attach)
        return result

    # -- loop side helpers ---------------------------------------------------------------

    def _sweep(self) -> None:
        """Write the rows of transfers that have streamed for ``begin_delay`` seconds."""
        self._sweeper = None
        now = time.monotonic()
        while self._pending:
            live = next(iter(self._pending.values()))
            due = live.began + self.begin_delay
            if due > now:
                assert self._loop is not None
                # Not too often: a little late is fine, a timer per begin is not.
                wait = max(due - now, self.begin_delay / 4)
                self._sweeper = self._loop.call_later(wait, self._sweep)
                return
            self._persist_begin(live)

    def _persist_begin(self, live: LiveTransfer) -> None:
        self._pending.pop(live.record.id, None)
        if live.persisted or live.record.id not in self._live:
            return
        live.persisted = True
        live.flushed_at = time.monotonic()
        rec = live.snapshot()
        live.stored = rec.bytes_sent
        owner = self.owner_id
        if live.count is not None:
            self._arm_poller()

        def insert(conn: sqlite3.Connection) -> None:
            # The final row may be there already: a finish committed on the loop first.
            conn.execute(_INSERT + " ON CONFLICT (id) DO NOTHING", _row(rec, owner))

        self._enqueue(_Op(insert, None))

    def follow(self, transfer_id: str, sent: Callable[[], int]) -> None:
        """Read ``sent()`` when progress is written (see :meth:`Ledger.follow`)."""
        super().follow(transfer_id, sent)
        live = self._live.get(transfer_id)
        if live is not None and live.persisted:  # begin_delay=0: its row is written already
            self._arm_poller()

    def _arm_poller(self) -> None:
        if self._poller is None:
            assert self._loop is not None
            # progress_interval may be 0 ("write every call"): a timer must not spin.
            every = max(self.progress_interval, _POLL_FLOOR)
            self._poller = self._loop.call_later(every, self._poll_progress)

    def _poll_progress(self) -> None:
        """Read the counters of followed transfers already written; queue what moved.

        One timer for the whole ledger, armed only while some written transfer is
        followed, so a short transfer never meets it; the writes it queues go out in one
        batch and one commit, however many transfers moved.
        """
        self._poller = None
        now = time.monotonic()
        followed = False
        for live in self._live.values():
            if live.count is None or not live.persisted:
                continue
            followed = True
            # Against what the store has, not the last reading: a get() in between
            # reads the counter too. The interval first: a timer may fire a hair early.
            if now - live.flushed_at >= self.progress_interval and live.sent() > live.stored:
                self._store_progress(live, now)
        if followed:
            self._arm_poller()

    # -- the journal (loop side) ---------------------------------------------------------

    def _journal_append(self, final: TransferRecord) -> bool:
        """Make ``final`` durable with one append to this instance's journal.

        Why: a response waits for this, and on a server a SQLite commit of the record
        cost about 100 µs of CPU per response (7 ``pwrite`` and 6 ``fcntl`` calls, and
        the caches it evicts), where this is one ``write`` of one line. The line is in
        the kernel's page cache when ``write`` returns, so it survives ``kill -9`` of
        the process (not a power loss: that is ``synchronous="FULL"``, which never
        journals), the same as a WAL commit with ``synchronous=NORMAL``. The record is
        then folded into SQLite by the writer thread within ``fold_delay``, many in one
        commit, and by recovery if the process dies first.

        Only for a transfer whose begin was never written (it ended within
        ``begin_delay``): no other worker can have ended a row that does not exist, so
        the finish cannot be refused later. False if the journal failed (it is closed,
        and the finish takes the direct path).
        """
        if self._journal_lost:
            self._journal_lost = False
            self._rotate_journal()  # another worker folded and deleted the old one
        fd = self._journal_fd
        if fd is None:
            return False
        data = _journal_line(final)
        try:
            written = os.write(fd, data)
        except OSError as exc:
            written, reason = -1, str(exc)
        else:
            reason = f"short write ({written} of {len(data)} bytes)"
        if written != len(data):
            # A torn line stays the journal's last: recovery skips it (its checksum).
            log.warning("ledger journal failed, finishes are committed directly: %s", reason)
            self._close_journal()
            return False
        folds = self._folds
        if folds is None:
            # One op folds every finish journaled until the next handoff: one statement
            # for all of them (see _folder), and no op of its own per finish.
            folds = self._folds = []
            self._enqueue(_Op(self._folder(folds), None), delay=self.fold_delay)
        folds.append(data)
        if len(folds) >= _FOLD_MAX:
            self._handoff()
        self._journal_size += written
        if self._journal_size >= _JOURNAL_ROTATE:
            self._rotate_journal()
        return True

    def _open_journal(self) -> None:
        """Start a new journal file (a new generation) for this instance."""
        self._journal_gen += 1
        path = _journal_path(self.path, self.owner_id, self._journal_gen)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._journal_fd, self._journal_path, self._journal_size = fd, path, 0

    def _rotate_journal(self) -> None:
        self._close_journal()
        try:
            self._open_journal()
        except OSError as exc:
            log.warning("no new ledger journal, finishes are committed directly: %s", exc)

    def _close_journal(self) -> None:
        """Stop appending; the writer deletes the file once what it holds is folded."""
        fd, path = self._journal_fd, self._journal_path
        self._journal_fd = self._journal_path = None
        if fd is None or path is None:
            return
        os.close(fd)
        # Queued after every fold of this journal: it runs after their commit.
        self._enqueue(_Op(self._retirer(path), None, write=False), delay=self.fold_delay)

    def _folder(self, lines: list[bytes]) -> Callable[[sqlite3.Connection], None]:
        """The op that folds journal ``lines`` (the loop appends to it until the handoff).

        One statement with the lines' JSON as its one parameter (SQLite's ``json_each``
        takes the rows apart): the writer thread holds the GIL only to join the lines,
        where ``executemany`` took it back for every row, and that tug of war with the
        event loop's thread cost each response about 25 µs of the loop's CPU while a
        fold ran (1 KiB responses in process, 2026-11-30). ``executemany`` remains for a
        SQLite built without JSON functions.
        """
        owner = self.owner_id

        def fold(conn: sqlite3.Connection) -> None:
            try:
                if self._fold_json:
                    rows = b"[" + b",".join(line[9:-1] for line in lines) + b"]"
                    cur = conn.execute(_FOLD_JSON, (owner, rows.decode("ascii")))
                else:
                    finals = [_parse_journal_line(line[:-1]) for line in lines]
                    params = [_row(final, owner) for final in finals if final is not None]
                    cur = conn.executemany(_UPSERT_FINAL, params)
            except sqlite3.Error:
                self._fold_failed = True  # keep the journals: recovery folds them
                raise
            if cur.rowcount != len(lines):
                # Already there: another worker judged this one dead (it stalled) and
                # folded its journal first. The same records, so nothing is lost.
                log.info("ledger fold: %d of %d records were folded already",
                         len(lines) - cur.rowcount, len(lines))  # fmt: skip

        return fold

    def _retirer(self, path: Path) -> Callable[[sqlite3.Connection], None]:
        def retire(conn: sqlite3.Connection) -> None:
            if not self._fold_failed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        return retire

    def _enqueue(self, op: _Op, *, urgent: bool = False, delay: float | None = None) -> None:
        """Queue ``op`` for the writer: now if ``urgent``, else within ``delay``.

        ``delay`` defaults to ``commit_delay``; journal folds pass ``fold_delay``. One
        timer for the outbox, moved earlier if a later op may wait less.
        """
        self._outbox.append(op)
        assert self._loop is not None
        wait = self.commit_delay if delay is None else delay
        if urgent or wait <= 0 or len(self._outbox) >= _BATCH_MAX:
            if not self._handoff_soon:
                self._handoff_soon = True
                self._loop.call_soon(self._handoff)
            return
        if self._handoff_soon:
            return
        due = self._loop.time() + wait
        if self._handoff_timer is not None:
            if due >= self._handoff_due:
                return
            self._handoff_timer.cancel()
        self._handoff_due = due
        self._handoff_timer = self._loop.call_at(due, self._handoff)

    def _handoff(self) -> None:
        self._handoff_soon = False
        self._folds = None  # handed over: the writer may read it now, the loop is done
        if self._handoff_timer is not None:
            self._handoff_timer.cancel()
            self._handoff_timer = None
        if self._outbox:
            ops, self._outbox = self._outbox, []
            self._queue.put(ops)

    async def _submit(
        self, fn: Callable[[sqlite3.Connection], Any], *, write: bool = True, urgent: bool = False
    ) -> Any:
        self._check_open()
        if self._broken is not None:
            raise LedgerError(f"the ledger writer stopped: {self._broken!r}")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        # Reads go at once; writes may wait commit_delay for company.
        self._enqueue(_Op(fn, fut, write=write), urgent=urgent or not write)
        # The op runs whether or not the caller stays: a cancelled finish() is still written.
        return await fut

    async def _submit_inline(self, final: TransferRecord) -> None:
        """Commit ``final`` on the loop: now if it is this turn's first, else at its end.

        Why on the loop: a response waits for this commit, and with ``synchronous=NORMAL``
        in WAL mode a commit is an append to the WAL without an fsync (≈ 25 µs of CPU on
        the 2-core development VM), while the trip to the writer thread and back costs two
        thread wake-ups (a 1 KiB response cost ≈ 50 µs more CPU that way, in-process, and
        waited longer). The loop never waits for a lock: if another connection holds it,
        the finish goes to the writer thread.

        Why now for the first finish of a turn, when the last turn that had one had no
        other: a serial client has nobody to share a commit with, and waiting for the end
        of the turn cost it a future, a callback and one more turn of the loop (≈ 12 µs
        of CPU per response, in-process). Finishes that come later in the same turn (a
        burst of concurrent responses) wait and share one commit at its end; and once a
        turn has had company, the next turn's first finish waits too, so that a busy loop
        keeps one commit per turn until the finishes come alone again.
        """
        assert self._loop is not None
        self._turn_finishes += 1
        if self._turn_finishes == 1:
            self._loop.call_soon(self._commit_inline)  # ends the turn: commits the rest
            if self._alone:
                if self._commit_now(final):
                    return
                # Locked by another writer (or worse): the writer thread waits and retries.
                await self._submit(self._final_writer(final), urgent=True)
                return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._inline_batch.append((final, fut))
        await fut

    def _commit_now(self, final: TransferRecord) -> bool:
        """Write ``final`` in a transaction of its own on the loop's connection.

        One statement in autocommit mode (no ``BEGIN``/``COMMIT`` round of its own: two
        calls into SQLite fewer). False if it could not (a lock): nothing was written.
        Raises :class:`InvalidTransition` if the stored record had already ended.
        """
        conn = self._inline
        assert conn is not None
        try:
            refused = _write_final(conn, final, self.owner_id)
        except sqlite3.Error:
            return False
        self._count_inline_commit()
        if refused is not None:
            raise refused
        return True

    def _commit_inline(self) -> None:
        """Commit the finishes that waited for the end of this turn, in one transaction."""
        if self._turn_finishes:
            self._alone = self._turn_finishes == 1
            self._turn_finishes = 0
        batch, self._inline_batch = self._inline_batch, []
        conn = self._inline
        if not batch or conn is None:
            return
        outcomes: list[BaseException | None] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for final, _fut in batch:
                outcomes.append(_write_final(conn, final, self.owner_id))
            conn.execute("COMMIT")
        except sqlite3.Error:
            # Locked by another writer (or worse): the writer thread waits and retries.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for final, fut in batch:
                _chain(self._submit_op(self._final_writer(final)), fut)
            return
        for (_final, fut), outcome in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if outcome is None:
                fut.set_result(None)
            else:
                fut.set_exception(outcome)
        self._count_inline_commit()

    def _count_inline_commit(self) -> None:
        self._inline_commits += 1
        if self._inline_commits % _CHECKPOINT_EVERY == 0:
            # The loop's connection never checkpoints (that may fsync): the writer does.
            self._enqueue(_Op(_checkpoint, None, write=False))  # not inside a transaction

    def _submit_op(self, fn: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(_Op(fn, fut), urgent=True)
        return fut

    def _final_writer(self, final: TransferRecord) -> Callable[[sqlite3.Connection], None]:
        owner = self.owner_id

        def write(conn: sqlite3.Connection) -> None:
            refused = _write_final(conn, final, owner)
            if refused is not None:
                raise refused

        return write

    def _remote_finisher(
        self,
        transfer_id: str,
        state: TransferState | StateName,
        bytes_sent: int,
        digest: str | None,
        error: BaseException | ErrorInfo | None,
        at: float,
    ) -> Callable[[sqlite3.Connection], None]:
        db = self.path

        def write(conn: sqlite3.Connection) -> None:
            # A record found only in a journal is final: finished() refuses it.
            final = _read(conn, transfer_id, db).finished(
                state, bytes_sent, digest=digest, error=error, at=at
            )
            info = final.error or ErrorInfo("", "")
            conn.execute(
                "UPDATE transfers SET state = ?, ended_at = ?, bytes_sent = ?, digest = ?,"
                " error_class = nullif(?, ''), error_message = nullif(?, '')"
                " WHERE id = ? AND state = 'streaming'",
                (
                    final.state,
                    final.ended_at,
                    final.bytes_sent,
                    final.digest,
                    info.error_class,
                    info.message,
                    final.id,
                ),
            )

        return write

    # -- the writer thread ---------------------------------------------------------------

    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._call_loop(_settle_open, ready, _as_ledger_error(exc, "cannot open ledger"))
            return
        self._unlink_folded(done=True)
        self._call_loop(_settle_open, ready, None)
        try:
            self._serve(conn)
        except BaseException as exc:  # a bug: fail every waiter rather than hang them
            log.exception("ledger writer thread stopped")
            self._broken = exc
            pending: list[_Op] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    pending.extend(self._queue.get_nowait())
            for op in pending:
                _fail(op, exc)
            self._call_loop(_settle_ops, [op for op in pending if op.fut is not None])
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(f"{self.path} has ledger schema {version}, newer than this code")
            # Not executescript(): it would commit the transaction we are in.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            try:
                conn.execute("SELECT json_extract('[1]', '$[0]')")
            except sqlite3.OperationalError:
                self._fold_json = False
            self._register_owner(conn)
            self._maintain(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        next_beat = time.monotonic() + self.heartbeat_interval
        next_maintenance = time.monotonic() + self.maintenance_interval
        while True:
            timeout = max(0.0, min(next_beat, next_maintenance) - time.monotonic())
            batch: list[_Op] = []
            try:
                batch.extend(self._queue.get(timeout=timeout))
                while len(batch) < _BATCH_MAX:
                    batch.extend(self._queue.get_nowait())
            except queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat_interval
                batch.insert(0, _Op(self._heartbeat, None))
            self._run_batch(conn, batch)
            if now >= next_maintenance:
                next_maintenance = now + self.maintenance_interval
                maintain = _Op(self._maintain, None)
                self._run_batch(conn, [maintain])
                self._unlink_folded(done=maintain.ok)
            if any(op.stop for op in batch):
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: Sequence[_Op]) -> None:
        self._commit([op for op in batch if op.write], conn)
        for op in batch:
            if not op.write:
                _apply(conn, op, raise_sqlite=False)
        for op in batch:
            if not op.ok and op.fut is None:
                log.warning("ledger write failed: %s", op.value)
        # Last, so that the woken event loop does not wait for this thread's GIL.
        done = [op for op in batch if op.fut is not None]
        if done:
            self._call_loop(_settle_ops, done)

    def _commit(self, writes: Sequence[_Op], conn: sqlite3.Connection) -> None:
        """Run ``writes`` in one transaction; if it fails, each in its own."""
        if not writes:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in writes:
                _apply(conn, op, raise_sqlite=True)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if len(writes) == 1:
                _fail(writes[0], exc)
                return
            # Find the culprit: one bad op must not sink the others.
            for op in writes:
                op.ok, op.value = True, None
                self._commit([op], conn)

    def _call_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(fn, *args)

    def _register_owner(self, conn: sqlite3.Connection) -> None:
        pid = os.getpid()
        conn.execute(
            "INSERT INTO owners (id, host, pid, proc_started, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
            (self.owner_id, socket.gethostname(), pid, process_started(pid) or 0.0, time.time()),
        )

    def _heartbeat(self, conn: sqlite3.Connection) -> None:
        beat = conn.execute(
            "UPDATE owners SET heartbeat_at = ? WHERE id = ?", (time.time(), self.owner_id)
        )
        if beat.rowcount == 0:
            # Another worker judged us dead (we stalled past stale_after) and retired our
            # streams; come back so that new transfers have a live owner. It may have
            # folded and deleted our journal too: the loop starts a new one.
            self._register_owner(conn)
            self._journal_lost = True

    def _unlink_folded(self, *, done: bool) -> None:
        """Delete the journals recovery folded, once that is committed (``done``)."""
        folded, self._folded_journals = self._folded_journals, []
        if done:
            for path in folded:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _maintain(self, conn: sqlite3.Connection) -> None:
        """Fold dead owners' journals, retire their streams, then prune by age and count."""
        now = time.time()
        host = socket.gethostname()
        dead: list[tuple[str, float]] = []
        alive = {self.owner_id}
        for owner, owner_host, pid, proc_started, beat in conn.execute(
            "SELECT id, host, pid, proc_started, heartbeat_at FROM owners WHERE id != ?",
            (self.owner_id,),
        ).fetchall():
            stale = now - beat > self.stale_after
            gone = owner_host == host and not process_alive(pid, proc_started)
            if stale or gone:
                dead.append((owner, beat))
            else:
                alive.add(owner)
        # First the journals: what a dead worker's clients saw complete becomes a row.
        self._folded_journals = []
        for path, owner in _journals(self.path):
            if owner in alive:
                continue
            for final in _read_journal(path):
                _write_final(conn, final, owner)  # a refusal: it was folded already
            self._folded_journals.append(path)
        for owner, beat in dead:
            conn.execute(
                "UPDATE transfers SET state = 'interrupted', ended_at = max(started_at, ?)"
                " WHERE owner = ? AND state = 'streaming'",
                (beat, owner),
            )
            conn.execute("DELETE FROM owners WHERE id = ?", (owner,))
        conn.execute(
            "UPDATE transfers SET state = 'interrupted', ended_at = max(started_at, ?)"
            " WHERE state = 'streaming' AND owner NOT IN (SELECT id FROM owners)",
            (now,),
        )
        conn.execute(
            "DELETE FROM transfers WHERE state != 'streaming' AND ended_at < ?",
            (now - self.max_age,),
        )
        cutoff = conn.execute(
            "SELECT ended_at FROM transfers WHERE state != 'streaming'"
            " ORDER BY ended_at DESC LIMIT 1 OFFSET ?",
            (self.max_records - 1,),
        ).fetchone()
        if cutoff is not None:
            conn.execute(
                "DELETE FROM transfers WHERE state != 'streaming' AND ended_at < ?", cutoff
            )


# -- helpers that run on the writer thread ---------------------------------------------


def _apply(conn: sqlite3.Connection, op: _Op, *, raise_sqlite: bool) -> None:
    try:
        op.value = op.fn(conn)
        op.ok = True
    except sqlite3.Error as exc:
        if raise_sqlite:
            raise
        _fail(op, exc)
    except Exception as exc:  # a rule was broken; the statement made no change
        op.ok, op.value = False, exc


def _fail(op: _Op, exc: BaseException) -> None:
    op.ok, op.value = False, _as_ledger_error(exc, "ledger write failed")


def _as_ledger_error(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, LedgerError | ConfigError):
        return exc
    err = LedgerError(f"{what}: {exc}")
    err.__cause__ = exc
    return err


def _write_final(
    conn: sqlite3.Connection, final: TransferRecord, owner: str
) -> InvalidTransition | None:
    """Write a final record; the error, if the stored one had already ended."""
    if conn.execute(_UPSERT_FINAL, _row(final, owner)).rowcount != 1:
        (state,) = conn.execute("SELECT state FROM transfers WHERE id = ?", (final.id,)).fetchone()
        return InvalidTransition(f"the transfer already ended as {state!r}")
    return None


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _progress_writer(transfer_id: str, bytes_sent: int) -> Callable[[sqlite3.Connection], None]:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE transfers SET bytes_sent = max(bytes_sent, ?)"
            " WHERE id = ? AND state = 'streaming'",
            (bytes_sent, transfer_id),
        )

    return write


def _read(conn: sqlite3.Connection, transfer_id: str, db: Path) -> TransferRecord:
    """The stored record; if there is none, the one a live worker's journal holds."""
    query = f"SELECT {_COLUMNS} FROM transfers WHERE id = ?"
    row = conn.execute(query, (transfer_id,)).fetchone()
    if row is None:
        found = _find_in_journals(db, transfer_id)
        if found is not None:
            return found[0]
        # Its owner may have folded it and deleted the journal since the first look:
        # a fold commits before its journal goes, so the row is there now if anywhere.
        row = conn.execute(query, (transfer_id,)).fetchone()
        if row is None:
            raise UnknownTransfer(transfer_id)
    r_bytes, r_digest, r_at, r_verified, r_reason = row[11:]
    receipt = (
        None if r_bytes is None else Receipt(r_bytes, r_digest, r_at, bool(r_verified), r_reason)
    )
    return _record(row[:11], receipt)


def _record(fields: Sequence[Any], receipt: Receipt | None = None) -> TransferRecord:
    """A record from its eleven stored fields, in ``_COLUMNS`` order (a row or a journal
    line); raises ValueError or TypeError if they do not fit."""
    (tid, method, path, state, started, ended, sent, size, digest, eclass, emsg) = fields
    return TransferRecord(
        id=tid,
        method=method,
        path=path,
        state=TransferState(state),
        started_at=started,
        ended_at=ended,
        bytes_sent=sent,
        size=size,
        digest=digest,
        error=None if eclass is None else ErrorInfo(eclass, emsg or ""),
        receipt=receipt,
    )


def _fields(rec: TransferRecord) -> tuple[Any, ...]:
    """The eleven stored fields of ``rec``, in ``_COLUMNS`` order (see :func:`_record`)."""
    err = rec.error
    return (
        rec.id,
        rec.method,
        rec.path,
        rec.state,
        rec.started_at,
        rec.ended_at,
        rec.bytes_sent,
        rec.size,
        rec.digest,
        None if err is None else err.error_class,
        None if err is None else err.message,
    )


def _row(rec: TransferRecord, owner: str) -> tuple[Any, ...]:
    """The table row of ``rec``: its fields with the owner after the id."""
    tid, *rest = _fields(rec)
    return (tid, owner, *rest)


# -- the journal's format ----------------------------------------------------------------
#
# One line per record: the CRC-32 of the JSON text in 8 hex digits, a space, and a JSON
# array of the record's fields (ASCII only: JSON escapes every control character, so a
# line never holds a newline of its own). A line without its newline, or whose checksum
# does not match, is a write a crash tore (or a disk that filled): it is skipped.


# One encoder for every line: json.dumps with options builds a new one per call.
_encode_json: Final = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _journal_path(db: Path, owner: str, generation: int) -> Path:
    return db.with_name(f"{db.name}.{owner}.{generation}{_JOURNAL_SUFFIX}")


def _journals(db: Path) -> list[tuple[Path, str]]:
    """The journal files next to ``db``, each with the owner that wrote it."""
    prefix = db.name + "."
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir(db.parent):
            if name.startswith(prefix) and name.endswith(_JOURNAL_SUFFIX):
                owner, _, _gen = name[len(prefix) : -len(_JOURNAL_SUFFIX)].partition(".")
                found.append((db.parent / name, owner))
    return found


def _journal_line(rec: TransferRecord) -> bytes:
    text = _encode_json(_fields(rec)).encode()
    return b"%08x %s\n" % (zlib.crc32(text), text)


def _parse_journal_line(line: bytes) -> TransferRecord | None:
    """The record of one whole line (newline stripped), or None if it is damaged."""
    crc, _, text = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
            return None
        return _record(json.loads(text))
    except (ValueError, TypeError):
        return None


def _read_journal(path: Path) -> list[TransferRecord]:
    """The whole records in a journal; torn or damaged lines are skipped and logged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the last line is whole
    records = []
    damaged = 1 if torn else 0
    for line in lines:
        record = _parse_journal_line(line)
        if record is None:
            damaged += 1
        else:
            records.append(record)
    if damaged:
        log.warning("ledger journal %s: skipped %d damaged or torn line(s)", path, damaged)
    return records


def _find_in_journals(db: Path, transfer_id: str) -> tuple[TransferRecord, str] | None:
    """The record of ``transfer_id`` in any journal next to ``db``, with its owner."""
    needle = f'["{transfer_id}",'.encode()
    for path, owner in _journals(db):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        at = data.rfind(needle)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end >= 0 and at == start + 9:
                record = _parse_journal_line(data[start:end])
                if record is not None and record.id == transfer_id:
                    return record, owner
            at = data.rfind(needle, 0, at)
    return None


# -- helpers that run on the event loop ------------------------------------------------


def _connect_inline(path: Path) -> sqlite3.Connection:
    """The loop's connection: it never waits for a lock (``timeout=0``), never checkpoints."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def _chain(source: asyncio.Future[Any], target: asyncio.Future[None]) -> None:
    """Settle ``target`` as ``source`` settles."""

    def done(src: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if src.cancelled():
            target.cancel()
        elif (exc := src.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(None)

    source.add_done_callback(done)


def _settle_open(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _settle_ops(ops: Sequence[_Op]) -> None:
    for op in ops:
        fut = op.fut
        if fut is None or fut.done():
            continue
        if op.ok:
            fut.set_result(op.value)
        else:
            fut.set_exception(op.value)
