"""The ledger contract, run against every backend (SQLite file, real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.interfaces import TransferState
from sluicegate.ledger import (
    FINAL_STATES,
    InvalidTransition,
    Ledger,
    SQLiteLedger,
    digest_of,
    is_transfer_id,
    new_transfer_id,
)

MakeLedger = Callable[..., Ledger]

BODY = b"0123456789" * 100
DIGEST = digest_of(BODY)


async def eventually_final(ledger: Ledger, tid: str) -> str:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            record = await ledger.get(tid)
        except UnknownTransfer:
            record = None
        if record is not None and record.final:
            return record.state
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tid} never became final")


async def test_begin_records_a_streaming_transfer(ledger: Ledger) -> None:
    before = time.time()
    tid = await ledger.begin("get", "/files/report.pdf?token=secret", size=len(BODY))
    assert is_transfer_id(tid)
    rec = await ledger.get(tid)
    assert (rec.id, rec.method, rec.path, rec.state) == (
        tid,
        "GET",
        "/files/report.pdf",
        "streaming",
    )
    assert rec.size == len(BODY) and rec.bytes_sent == 0 and rec.ended_at is None
    assert before - 1 <= rec.started_at <= time.time() + 1
    assert rec.digest is None and rec.error is None and rec.receipt is None


async def test_bad_begin_arguments(ledger: Ledger) -> None:
    with pytest.raises(ConfigError):
        await ledger.begin("G T", "/")
    with pytest.raises(ConfigError):
        await ledger.begin("GET", "/", size=-5)


async def test_progress_is_visible_and_monotonic(ledger: Ledger) -> None:
    tid = await ledger.begin("GET", "/p")
    for n in (10, 500, 200):
        await ledger.progress(tid, n)
    assert (await ledger.get(tid)).bytes_sent == 500
    with pytest.raises(ConfigError):
        await ledger.progress(tid, -1)
    await ledger.progress(new_transfer_id(), 10)  # not ours: ignored, never an error


async def test_progress_reaches_the_store_on_flush(make_ledger: MakeLedger) -> None:
    async with make_ledger(settle_timeout=0) as writer, make_ledger() as reader:
        tid = await writer.begin("GET", "/p")
        await writer.progress(tid, 4096)
        await writer.flush()
        assert (await reader.get(tid)).bytes_sent == 4096


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
async def test_finish_in_every_final_state(make_ledger: MakeLedger, state: str) -> None:
    async with make_ledger() as writer, make_ledger() as reader:
        tid = await writer.begin("GET", "/f", size=len(BODY))
        await writer.progress(tid, 100)
        error = None if state == "completed" else OSError("disk full at https://u:pw@h/x")
        await writer.finish(tid, state, 400, digest=DIGEST, error=error)  # type: ignore[arg-type]
        for ledger in (writer, reader):  # the writer's view and the store's agree
            rec = await ledger.get(tid)
            assert rec.state == state and rec.bytes_sent == 400 and rec.digest == DIGEST
            assert type(rec.state) is TransferState  # the shared vocabulary, from any store
            assert rec.ended_at is not None and rec.ended_at >= rec.started_at
            if error is None:
                assert rec.error is None
            else:
                assert rec.error is not None and rec.error.error_class == "OSError"
                assert "pw" not in rec.error.message and "disk full" in rec.error.message


async def test_final_is_final(ledger: Ledger) -> None:
    tid = await ledger.begin("GET", "/f")
    await ledger.finish(tid, "client_gone", 3)
    with pytest.raises(InvalidTransition):
        await ledger.finish(tid, "completed", 3)
    with pytest.raises(InvalidTransition):
        await ledger.finish(tid, "failed", 5)
    assert (await ledger.get(tid)).state == "client_gone"


async def test_finish_rejects_bad_transitions_without_writing(ledger: Ledger) -> None:
    tid = await ledger.begin("GET", "/f")
    await ledger.progress(tid, 50)
    with pytest.raises(InvalidTransition):
        await ledger.finish(tid, "streaming", 50)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition):
        await ledger.finish(tid, "completed", 49)
    with pytest.raises(InvalidTransition):
        await ledger.finish(tid, "completed", 50, digest="sha-256=:bad:")
    assert (await ledger.get(tid)).state == "streaming"
    await ledger.finish(tid, "completed", 50)
    assert (await ledger.get(tid)).state == "completed"


async def test_unknown_transfers(ledger: Ledger) -> None:
    for tid in (new_transfer_id(), "not-an-id", ""):
        with pytest.raises(UnknownTransfer):
            await ledger.get(tid)
        with pytest.raises(UnknownTransfer):
            await ledger.finish(tid, "completed", 0)
    assert issubclass(UnknownTransfer, LookupError)


async def test_another_instance_may_finish_a_transfer(make_ledger: MakeLedger) -> None:
    async with make_ledger() as first, make_ledger() as second:
        tid = await first.begin("GET", "/shared")
        await first.flush()
        await second.finish(tid, "failed", 0, error=RuntimeError("worker restarted"))
        assert (await second.get(tid)).state == "failed"
        with pytest.raises(InvalidTransition):
            await first.finish(tid, "completed", 10)
        with pytest.raises(InvalidTransition):
            await second.finish(tid, "completed", 10)


async def test_receipt_verified_and_attached(make_ledger: MakeLedger) -> None:
    async with make_ledger() as writer, make_ledger() as reader:
        tid = await writer.begin("GET", "/r", size=len(BODY))
        await writer.finish(tid, "completed", len(BODY), digest=DIGEST)
        verdict = await reader.receipt(tid, len(BODY), DIGEST)
        assert (verdict.verified, verdict.state, verdict.reason) == (True, "completed", "verified")
        rec = await writer.get(tid)
        assert rec.receipt is not None
        assert rec.receipt.verified and rec.receipt.bytes_received == len(BODY)
        assert rec.receipt.digest == DIGEST and rec.receipt.received_at >= rec.started_at
        # a retry (or a second opinion) replaces the receipt; the state stays final
        again = await writer.receipt(tid, 10, DIGEST)
        assert not again.verified and again.reason == "size_mismatch"
        rec = await reader.get(tid)
        assert rec.state == "completed" and rec.receipt is not None
        assert rec.receipt.bytes_received == 10 and not rec.receipt.verified


@pytest.mark.parametrize(
    ("state", "sent", "received", "digest", "reason"),
    [
        ("completed", len(BODY), len(BODY), digest_of(b"other"), "digest_mismatch"),
        ("completed", len(BODY), len(BODY) - 1, DIGEST, "size_mismatch"),
        ("failed", 300, 300, digest_of(BODY[:300]), "not_completed"),
        ("timed_out", 300, 300, digest_of(BODY[:300]), "not_completed"),
    ],
)
async def test_receipt_not_verified(
    ledger: Ledger, state: str, sent: int, received: int, digest: str, reason: str
) -> None:
    tid = await ledger.begin("GET", "/r", size=len(BODY))
    error = None if state == "completed" else RuntimeError("x")
    await ledger.finish(tid, state, sent, digest=DIGEST, error=error)  # type: ignore[arg-type]
    verdict = await ledger.receipt(tid, received, digest)
    assert (verdict.verified, verdict.state, verdict.reason) == (False, state, reason)
    rec = await ledger.get(tid)
    assert rec.receipt is not None and rec.receipt.reason == reason


async def test_receipt_waits_for_a_finish_that_is_on_its_way(make_ledger: MakeLedger) -> None:
    async with make_ledger() as writer, make_ledger(settle_timeout=5.0) as reader:
        tid = await writer.begin("GET", "/r")
        await writer.flush()

        async def finish_soon() -> None:
            await asyncio.sleep(0.1)
            await writer.finish(tid, "completed", len(BODY), digest=DIGEST)

        finisher = asyncio.create_task(finish_soon())
        verdict = await asyncio.wait_for(reader.receipt(tid, len(BODY), DIGEST), 5)
        await finisher
        assert verdict.verified


async def test_receipt_while_streaming_is_not_stored(make_ledger: MakeLedger) -> None:
    async with make_ledger(settle_timeout=0.05) as ledger:
        tid = await ledger.begin("GET", "/r")
        verdict = await ledger.receipt(tid, 0, DIGEST)
        assert (verdict.verified, verdict.reason, verdict.state) == (
            False,
            "in_progress",
            "streaming",
        )
        assert (await ledger.get(tid)).receipt is None


async def test_receipt_errors(make_ledger: MakeLedger) -> None:
    async with make_ledger(settle_timeout=0.05) as ledger:
        with pytest.raises(UnknownTransfer):
            await ledger.receipt(new_transfer_id(), 1, DIGEST)
        tid = await ledger.begin("GET", "/r")
        await ledger.finish(tid, "completed", 1)
        for count, digest in ((-1, DIGEST), (True, DIGEST), (1, "sha-256=:x:"), (1, "")):
            with pytest.raises(ConfigError):
                await ledger.receipt(tid, count, digest)
        assert (await ledger.get(tid)).receipt is None


async def test_many_concurrent_transfers(make_ledger: MakeLedger) -> None:
    async with make_ledger() as ledger:

        async def one(i: int) -> str:
            tid = await ledger.begin("GET", f"/c/{i}", size=i)
            await asyncio.sleep(0)
            await ledger.progress(tid, i // 2)
            await ledger.finish(tid, "completed" if i % 3 else "client_gone", i)
            return tid

        ids = await asyncio.gather(*(one(i) for i in range(300)))
    async with make_ledger() as reopened:
        for i, tid in enumerate(ids):
            rec = await reopened.get(tid)
            assert rec.path == f"/c/{i}" and rec.bytes_sent == i
            assert rec.state == ("completed" if i % 3 else "client_gone")


async def test_a_cancelled_finish_is_still_recorded(ledger: Ledger) -> None:
    # Two finishes in one turn of the loop. Redis's wait for their round trip and are
    # cancelled there. SQLite's journal records both without suspending (nothing left
    # to cancel); without the journal it commits the first of a turn at once and the
    # second waits for the end of the turn (test_ledger_sqlite covers that one).
    tids = [await ledger.begin("GET", f"/x/{i}") for i in range(2)]
    tasks = [asyncio.create_task(ledger.finish(tid, "completed", 7)) for tid in tids]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    if isinstance(ledger, SQLiteLedger):
        assert all(task.done() and not task.cancelled() for task in tasks)
    else:
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
    await asyncio.gather(*tasks, return_exceptions=True)
    for tid in tids:
        assert await eventually_final(ledger, tid) == "completed"


async def test_close_interrupts_what_still_streams(make_ledger: MakeLedger) -> None:
    ledger = await make_ledger().open()
    live = await ledger.begin("GET", "/live")
    await ledger.progress(live, 77)
    done = await ledger.begin("GET", "/done")
    await ledger.finish(done, "completed", 1)
    await ledger.close()
    await ledger.close()  # idempotent
    with pytest.raises(LedgerError):
        await ledger.begin("GET", "/late")
    with pytest.raises(LedgerError):
        await ledger.get(done)
    with pytest.raises(LedgerError):
        await ledger.open()
    async with make_ledger() as reopened:
        rec = await reopened.get(live)
        assert rec.state == "interrupted" and rec.bytes_sent == 77 and rec.ended_at is not None
        assert (await reopened.get(done)).state == "completed"


async def test_settle_timeout_is_validated(make_ledger: MakeLedger) -> None:
    with pytest.raises(ConfigError):
        make_ledger(settle_timeout=-1)


async def test_commit_before_end_is_on_by_default_and_validated(make_ledger: MakeLedger) -> None:
    assert make_ledger().commit_before_end is True
    assert make_ledger(commit_before_end=False).commit_before_end is False
    with pytest.raises(ConfigError, match="commit_before_end"):
        make_ledger(commit_before_end="yes")


async def test_either_way_a_finish_returns_once_it_is_durable(make_ledger: MakeLedger) -> None:
    for before_end in (True, False):
        async with make_ledger(commit_before_end=before_end) as ledger, make_ledger() as reader:
            tid = await ledger.begin("GET", "/durable", size=5)
            await ledger.finish(tid, "completed", 5, digest=digest_of(b"hello"))
            record = await reader.get(tid)  # another instance reads the store itself
            assert record.state == "completed" and record.digest == digest_of(b"hello")


async def test_track_records_completed(make_ledger: MakeLedger) -> None:
    async with make_ledger() as ledger:
        async with ledger.track("GET", "/t", size=len(BODY)) as transfer:
            assert (await ledger.get(transfer.id)).state == "streaming"
            for start in range(0, len(BODY), 300):
                await transfer.sent(len(BODY[start : start + 300]))
            transfer.digest = DIGEST
        rec = await ledger.get(transfer.id)
        assert (rec.state, rec.bytes_sent, rec.digest) == ("completed", len(BODY), DIGEST)
        assert (await ledger.receipt(transfer.id, len(BODY), DIGEST)).verified


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (BrokenPipeError("peer gone"), "client_gone"),
        (TimeoutError(), "timed_out"),
        (ValueError("producer bug"), "failed"),
        (asyncio.CancelledError(), "interrupted"),
    ],
)
async def test_track_records_how_it_failed_and_reraises(
    ledger: Ledger, error: BaseException, state: str
) -> None:
    with pytest.raises(type(error)):
        async with ledger.track("GET", "/t") as transfer:
            await transfer.sent(10)
            raise error
    rec = await ledger.get(transfer.id)
    assert (rec.state, rec.bytes_sent) == (state, 10)
    assert rec.error is not None and rec.error.error_class == type(error).__name__


async def test_track_never_hides_the_original_error(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="original"):
        async with ledger.track("GET", "/t") as transfer:
            await ledger.finish(transfer.id, "failed", 0)  # so track's own finish fails
            raise ValueError("original")
