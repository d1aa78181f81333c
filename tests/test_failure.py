"""Failure you can see: error policies, digests, trailers, and the transfer ledger."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluicegate import ConfigError, StreamResponse
from sluicegate.http.integrity import Digester, digest_of, file_digest
from sluicegate.ledger import SQLiteLedger
from tests.asgi import Exchange, call


async def rows_then_boom() -> AsyncIterator[str]:
    yield '{"row":1}\n'
    await asyncio.sleep(0.01)
    yield '{"row":2}\n'
    await asyncio.sleep(0.01)
    raise LookupError("row 3 is gone\nsecret stack line")


async def test_inband_ndjson_ends_with_an_error_record_and_a_whole_body() -> None:
    ndjson = "application/x-ndjson"
    response = StreamResponse(rows_then_boom(), media_type=ndjson, on_error="inband")
    ex = await call(response)
    assert ex.status == 200 and ex.complete
    lines = ex.body.decode().splitlines()
    assert lines[:2] == ['{"row":1}', '{"row":2}']
    assert json.loads(lines[2]) == {"error": "LookupError", "message": "row 3 is gone"}


async def test_inband_event_stream_sends_an_error_event() -> None:
    async def events() -> AsyncIterator[str]:
        yield "data: 1\n\n"
        await asyncio.sleep(0.01)
        raise TimeoutError("upstream")

    ex = await call(StreamResponse(events(), media_type="text/event-stream", on_error="inband"))
    assert ex.complete
    record = b'event: error\ndata: {"error":"TimeoutError","message":"upstream"}\n\n'
    assert ex.body.endswith(record)


async def test_inband_for_a_binary_type_still_aborts() -> None:
    ex = Exchange()
    with pytest.raises(LookupError):
        await call(StreamResponse(rows_then_boom(), on_error="inband"), exchange=ex)
    assert ex.status == 200 and not ex.complete


async def test_a_callable_policy_writes_its_own_ending() -> None:
    seen: list[BaseException] = []

    def ending(exc: BaseException) -> str:
        seen.append(exc)
        return "<!-- cut short -->"

    ex = await call(StreamResponse(rows_then_boom(), media_type="text/plain", on_error=ending))
    assert ex.complete and ex.body.endswith(b"<!-- cut short -->")
    assert isinstance(seen[0], LookupError)


def test_a_bad_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="on_error"):
        StreamResponse(b"", on_error="shrug")  # type: ignore[arg-type]


async def test_repr_digest_is_a_header_when_the_body_is_in_memory() -> None:
    ex = await call(StreamResponse(b"hello", digest=True))
    assert ex.headers["repr-digest"] == digest_of(b"hello")
    assert ex.headers["repr-digest"] == "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:"


async def _chunks() -> AsyncIterator[bytes]:
    for i in range(50):
        yield bytes([i]) * 3000
        await asyncio.sleep(0)


async def test_repr_digest_is_a_trailer_when_server_and_client_support_it() -> None:
    ex = Exchange()
    response = StreamResponse(_chunks(), digest=True)
    await call(
        response,
        exchange=ex,
        headers=[(b"te", b"trailers")],
        extensions={"http.response.trailers": {}},
    )
    start, trailer = ex.messages[0], ex.messages[-1]
    assert start["trailers"] is True and (b"trailer", b"repr-digest") in start["headers"]
    assert trailer["type"] == "http.response.trailers"
    body = b"".join(bytes([i]) * 3000 for i in range(50))
    assert trailer["headers"] == [(b"repr-digest", digest_of(body).encode())]


async def test_no_trailer_without_te_trailers() -> None:
    ex = Exchange()
    await call(
        StreamResponse(_chunks(), digest=True),
        exchange=ex,
        extensions={"http.response.trailers": {}},
    )
    assert "trailers" not in ex.messages[0]
    assert ex.messages[-1]["type"] == "http.response.body"


def test_digester_and_file_digest(tmp_path: Path) -> None:
    d = Digester()
    for part in (b"ab", bytearray(b"cd"), memoryview(b"ef")):
        d.update(part)
    assert d.value() == digest_of(b"abcdef") and d.bytes == 6
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100_000)
    expected = digest_of(b"x" * 100_000)
    assert file_digest(f) == expected == file_digest(f)  # the second one is cached
    f.write_bytes(b"y" * 100_001)
    assert file_digest(f) == digest_of(b"y" * 100_001)
    assert hashlib.sha256(b"y" * 100_001).digest()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    async with SQLiteLedger(tmp_path / "ledger.db") as led:
        yield led


async def test_a_completed_stream_is_recorded_with_its_digest(ledger: SQLiteLedger) -> None:
    ex = await call(StreamResponse(_chunks(), ledger=ledger), path="/export")
    tid = ex.headers["transfer-id"]
    assert ex.headers["link"] == f'</transfers/{tid}>; rel="transfer-status"'
    record = await ledger.get(tid)
    assert record.state == "completed" and record.path == "/export"
    assert record.bytes_sent == len(ex.body) == 150_000
    assert record.digest == digest_of(ex.body)


async def test_a_failed_stream_is_recorded_with_its_error(ledger: SQLiteLedger) -> None:
    ex = Exchange()
    with pytest.raises(LookupError):
        await call(StreamResponse(rows_then_boom(), ledger=ledger), exchange=ex)
    record = await ledger.get(ex.headers["transfer-id"])
    assert record.state == "failed"
    assert record.error is not None and record.error.error_class == "LookupError"
    assert record.bytes_sent == len(ex.body)


async def test_a_client_that_left_is_recorded(ledger: SQLiteLedger) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"z" * 1000
            await asyncio.sleep(0.001)

    ex = Exchange()

    def on_send(message: dict[str, object]) -> None:
        if len(ex.messages) > 5:
            ex.disconnect.set()

    ex.on_send = on_send
    await asyncio.wait_for(call(StreamResponse(endless(), ledger=ledger), exchange=ex), 5)
    record = await ledger.get(ex.headers["transfer-id"])
    assert record.state == "client_gone"


async def test_a_broken_ledger_never_breaks_the_download() -> None:
    class Broken(SQLiteLedger):
        async def begin(self, method: str, path: str, *, size: int | None = None) -> str:
            raise OSError("disk full")

    ex = await call(StreamResponse(b"still here", ledger=Broken("/nonexistent/x.db")))
    assert ex.status == 200 and ex.body == b"still here"
    assert "transfer-id" not in ex.headers


async def test_file_response_sends_the_cached_repr_digest(tmp_path: Path) -> None:
    from sluicegate import FileResponse

    data = bytes(range(256)) * 1000
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    ex = await call(FileResponse(path, digest=True))
    assert ex.headers["repr-digest"] == digest_of(data)
    partial = await call(FileResponse(path, digest=True), headers=[(b"range", b"bytes=0-9")])
    assert partial.status == 206 and partial.headers["repr-digest"] == digest_of(data)


async def test_inband_ending_is_in_the_trailer_digest() -> None:
    ex = Exchange()
    response = StreamResponse(
        rows_then_boom(), media_type="application/x-ndjson", on_error="inband", digest=True
    )
    await call(
        response,
        exchange=ex,
        headers=[(b"te", b"trailers")],
        extensions={"http.response.trailers": {}},
    )
    body = b"".join(bytes(m.get("body", b"")) for m in ex.messages[1:-1])
    assert body.endswith(b'"message":"row 3 is gone"}\n')
    assert ex.messages[-1]["headers"] == [(b"repr-digest", digest_of(body).encode())]
