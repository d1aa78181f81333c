"""The end of a response leaves only after its ledger record is committed.

Sans-IO first (:class:`EndGate` on scripted message sequences), then through
:class:`~sluicegate.StreamResponse` with a second ledger instance reading the store at
the moment the end reaches the server, for both backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluicegate import StreamResponse
from sluicegate.ledger import Ledger, TransferRecord, UnknownTransfer, digest_of
from sluicegate.ledger.gate import EndGate
from tests.asgi import Exchange, call
from tests.ledger.conftest import MakeLedger


def start(*headers: tuple[bytes, bytes], trailers: bool = False) -> dict[str, Any]:
    message = {"type": "http.response.start", "status": 200, "headers": [*headers]}
    return {**message, "trailers": trailers}


def body(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


SIZED = (b"content-length", b"6")
TRAILERS = {"type": "http.response.trailers", "headers": [], "more_trailers": False}


@pytest.mark.parametrize(
    ("messages", "passed", "sealed_before", "nbytes"),
    [
        # chunked: the terminating message; an empty one has nothing to split
        (
            [start(), body(b"abc", True), body(b"def", True), body(b"", False)],
            [start(), body(b"abc", True), body(b"def", True), body(b"", False)],
            3,
            6,
        ),
        # ... else all but its last byte leave before the seal
        (
            [start(), body(b"abc", True), body(b"def", False)],
            [start(), body(b"abc", True), body(b"de", True), body(b"f", False)],
            3,
            6,
        ),
        ([start(), body(b"x", False)], [start(), body(b"x", False)], 1, 1),
        # Content-Length: the message with the last byte, whatever follows it; the head
        # waits for the first body message
        (
            [start(SIZED), body(b"abc", True), body(b"def", True), body(b"", False)],
            [
                start(SIZED),
                body(b"abc", True),
                body(b"de", True),
                body(b"f", True),
                body(b"", False),
            ],
            3,
            6,
        ),
        (
            [start(SIZED), body(memoryview(b"abcdef"), False)],
            [start(SIZED), body(b"abcde", True), body(b"f", False)],
            2,
            6,
        ),
        # trailers announced: the trailers end the response, not the body
        (
            [start(trailers=True), body(b"abcdef", False), TRAILERS],
            [start(trailers=True), body(b"abcdef", False), TRAILERS],
            2,
            6,
        ),
        # an empty body
        (
            [start((b"content-length", b"0")), body(b"", False)],
            [start((b"content-length", b"0")), body(b"", False)],
            0,
            0,
        ),
    ],
)
async def test_the_gate_seals_once_before_the_last_byte(
    messages: list[dict[str, Any]],
    passed: list[dict[str, Any]],
    sealed_before: int,
    nbytes: int,
) -> None:
    out: list[dict[str, Any]] = []
    seals: list[tuple[int, int]] = []

    async def send(message: Any) -> None:
        out.append(message)

    async def seal(sent: int) -> None:
        seals.append((len(out), sent))

    gate = EndGate(send, seal)
    for message in messages:
        await gate(message)
    assert out == passed  # a memoryview equals the bytes it shows
    assert seals == [(sealed_before, nbytes)]
    assert gate.sealed and gate.sent == nbytes


async def test_the_gate_never_seals_a_short_body() -> None:
    gate = EndGate(_discard, _fail_seal)
    await gate(start(SIZED))
    await gate(body(b"abc", True))
    assert not gate.sealed and gate.sent == 3


async def _discard(message: Any) -> None:
    pass


async def _fail_seal(sent: int) -> None:
    raise AssertionError("sealed")


# -- through StreamResponse, both backends --------------------------------------------

BODY = bytes(range(256)) * 600  # 150 KiB: several messages


async def _chunks() -> AsyncIterator[bytes]:
    for i in range(0, len(BODY), 40_000):
        yield BODY[i : i + 40_000]
        await asyncio.sleep(0)


def _ends(message: dict[str, Any], sent: int, sized: bool, trailers: bool) -> bool:
    if message["type"] == "http.response.trailers":
        return True
    if message["type"] != "http.response.body":
        return False
    return (sized and sent >= len(BODY)) or (not message["more_body"] and not trailers)


async def _record_at_the_end(
    reader: Ledger, response: StreamResponse, *, sized: bool, trailers: bool = False
) -> tuple[Exchange, TransferRecord | None, int]:
    """Run ``response``; read its record from ``reader`` when the end reaches the server."""
    ex = Exchange()
    seen: list[TransferRecord | None] = []
    sent = 0

    async def on_send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += len(message.get("body", b""))
        if not seen and _ends(message, sent, sized, trailers):
            try:
                seen.append(await reader.get(ex.headers["transfer-id"]))
            except UnknownTransfer:
                seen.append(None)

    ex.on_send = on_send
    headers = [(b"te", b"trailers")] if trailers else []
    extensions = {"http.response.trailers": {}} if trailers else {}
    await call(response, path="/body", exchange=ex, headers=headers, extensions=extensions)
    assert len(seen) == 1, "the end never came"
    return ex, seen[0], sent


@pytest.mark.parametrize("shape", ["chunked", "sized", "trailers"])
async def test_the_end_leaves_after_the_completed_record_is_committed(
    make_ledger: MakeLedger, shape: str
) -> None:
    async with make_ledger() as ledger, make_ledger() as reader:
        content = BODY if shape == "sized" else _chunks()
        ex, record, sent = await _record_at_the_end(
            reader,
            StreamResponse(content, ledger=ledger),
            sized=shape == "sized",
            trailers=shape == "trailers",
        )
        last = ex.messages[-1]
        assert ex.complete or last == {**last, "type": "http.response.trailers"}
        assert ex.body == BODY
        assert record is not None and record.state == "completed"
        assert record.bytes_sent == sent == len(BODY)
        assert record.digest == digest_of(BODY)


async def test_an_inband_ending_is_recorded_failed_before_it_leaves(
    make_ledger: MakeLedger,
) -> None:
    async def rows() -> AsyncIterator[bytes]:
        yield b'{"row": 1}\n'
        await asyncio.sleep(0)
        raise LookupError("row 2 is gone")

    async with make_ledger() as ledger, make_ledger() as reader:
        response = StreamResponse(
            rows(), media_type="application/x-ndjson", on_error="inband", ledger=ledger
        )
        ex, record, sent = await _record_at_the_end(reader, response, sized=False)
        assert ex.complete
        assert record is not None and record.state == "failed"
        assert record.error is not None and record.error.error_class == "LookupError"
        assert record.bytes_sent == sent == len(ex.body)


async def test_off_the_record_follows_the_end(make_ledger: MakeLedger) -> None:
    """The control: with ``commit_before_end=False`` the end leaves first."""
    async with make_ledger(commit_before_end=False) as ledger, make_ledger() as reader:
        if hasattr(ledger, "commit_delay"):
            ledger.commit_delay = 0.2  # SQLite: widen the group commit's window
        ex, record, _ = await _record_at_the_end(
            reader, StreamResponse(_chunks(), ledger=ledger), sized=False
        )
        assert ex.complete
        assert record is None or record.state == "streaming"
        final = await _eventually_final(reader, ex.headers["transfer-id"])
        assert final.state == "completed"


async def _eventually_final(reader: Ledger, tid: str) -> TransferRecord:
    for _ in range(100):
        try:
            record = await reader.get(tid)
        except UnknownTransfer:
            record = None
        if record is not None and record.final:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError("never final")


async def test_a_failure_before_the_first_byte_is_not_sealed(make_ledger: MakeLedger) -> None:
    async def broken() -> AsyncIterator[bytes]:
        raise OSError("no such report")
        yield b""  # pragma: no cover

    async with make_ledger() as ledger:
        response = StreamResponse(broken(), ledger=ledger)
        ex = await call(response, path="/body")
        assert ex.status == 500
        # The 500's body is not the transfer's: the record counts none of it.
        tid = dict(response.raw_headers)[b"transfer-id"].decode()
        record = await _eventually_final(ledger, tid)
        assert record.state == "failed" and record.bytes_sent == 0
