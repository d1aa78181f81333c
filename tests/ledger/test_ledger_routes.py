"""The ledger's HTTP endpoints: in process through httpx.ASGITransport, then on uvicorn."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from sluicegate.ledger import (
    TRANSFER_ID_HEADER,
    LedgerApp,
    SQLiteLedger,
    TransferRecord,
    digest_of,
    ledger_routes,
    new_transfer_id,
)

BODY = b"%PDF-1.7 " + bytes(range(256)) * 40
DIGEST = digest_of(BODY)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    async with SQLiteLedger(tmp_path / "l.db", settle_timeout=0.05) as opened:
        yield opened


@pytest.fixture
async def http(ledger: SQLiteLedger) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Mount("/transfers", LedgerApp(ledger))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def completed(ledger: SQLiteLedger) -> str:
    tid = await ledger.begin("GET", "/report.pdf", size=len(BODY))
    await ledger.finish(tid, "completed", len(BODY), digest=DIGEST)
    return tid


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["status"] == status and doc["title"] and doc["detail"] and doc["type"]
    return dict(doc)


async def test_get_record(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    response = await http.get(f"/transfers/{tid}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    # the JSON carries microseconds; compare at that precision
    assert TransferRecord.from_json(response.json()).to_json() == (await ledger.get(tid)).to_json()
    assert response.json()["state"] == "completed"


async def test_get_a_streaming_record_shows_progress(
    http: httpx.AsyncClient, ledger: SQLiteLedger
) -> None:
    tid = await ledger.begin("GET", "/big.iso")
    await ledger.progress(tid, 12345)
    doc = (await http.get(f"/transfers/{tid}")).json()
    assert (doc["state"], doc["bytes_sent"], doc["ended_at"]) == ("streaming", 12345, None)


@pytest.mark.parametrize("tid", [new_transfer_id(), "short", "A" * 23, "..%2F..%2Fetc"])
async def test_get_unknown_is_404(http: httpx.AsyncClient, tid: str) -> None:
    assert_problem(await http.get(f"/transfers/{tid}"), 404)
    receipt = {"bytes_received": 1, "digest": DIGEST}
    assert_problem(await http.post(f"/transfers/{tid}/receipt", json=receipt), 404)


async def test_receipt_verified(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    receipt = {"bytes_received": len(BODY), "digest": DIGEST}
    response = await http.post(f"/transfers/{tid}/receipt", json=receipt)
    assert response.status_code == 200
    assert response.json() == {
        "verified": True,
        "state": "completed",
        "reason": "verified",
        "detail": "complete and intact",
    }
    stored = (await http.get(f"/transfers/{tid}")).json()["receipt"]
    assert stored["verified"] is True and stored["bytes_received"] == len(BODY)


async def test_receipt_not_verified(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await ledger.begin("GET", "/report.pdf", size=len(BODY))
    await ledger.finish(tid, "failed", 100, error=RuntimeError("producer died"))
    receipt = {"bytes_received": 100, "digest": digest_of(BODY[:100])}
    response = await http.post(f"/transfers/{tid}/receipt", json=receipt)
    assert response.status_code == 200
    doc = response.json()
    assert (doc["verified"], doc["state"], doc["reason"]) == (False, "failed", "not_completed")


GOOD = {"bytes_received": len(BODY), "digest": DIGEST}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"text"',
        b"null",
        json.dumps({"digest": DIGEST}).encode(),
        json.dumps({**GOOD, "verified": True}).encode(),
        json.dumps({**GOOD, "bytes_received": "10"}).encode(),
        json.dumps({**GOOD, "bytes_received": 10.0}).encode(),
        json.dumps({**GOOD, "bytes_received": True}).encode(),
        json.dumps({**GOOD, "bytes_received": None}).encode(),
        json.dumps({**GOOD, "bytes_received": -1}).encode(),
        json.dumps({**GOOD, "bytes_received": 2**63}).encode(),
        b'{"bytes_received": ' + b"9" * 3000 + b', "digest": "x"}',
        b'{"bytes_received": 1e999, "digest": "x"}',
        b'{"bytes_received": NaN, "digest": "x"}',
        json.dumps({**GOOD, "digest": None}).encode(),
        json.dumps({**GOOD, "digest": 5}).encode(),
        json.dumps({**GOOD, "digest": "sha-256=:abc:"}).encode(),
        json.dumps({**GOOD, "digest": "md5=:" + "A" * 22 + "==:"}).encode(),
        json.dumps({**GOOD, "digest": DIGEST + ";x=1"}).encode(),
        json.dumps({**GOOD, "digest": "sha-256=:" + "A" * 600 + ":"}).encode(),
        b"[" * 2000 + b"]" * 2000,
    ],
)
async def test_malformed_receipts_are_422_and_write_nothing(
    http: httpx.AsyncClient, ledger: SQLiteLedger, body: bytes
) -> None:
    tid = await completed(ledger)
    response = await http.post(
        f"/transfers/{tid}/receipt", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)
    assert (await ledger.get(tid)).receipt is None


async def test_receipt_body_too_large_is_413(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    padded = json.dumps({**GOOD, "pad": "x" * 5000}).encode()
    assert_problem(await http.post(f"/transfers/{tid}/receipt", content=padded), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    assert_problem(await http.post(f"/transfers/{tid}/receipt", content=chunks()), 413)
    bogus = {"content-length": "12abc"}
    assert_problem(await http.post(f"/transfers/{tid}/receipt", content=b"{}", headers=bogus), 413)
    assert (await ledger.get(tid)).receipt is None


async def test_receipt_media_types(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    body = json.dumps(GOOD).encode()
    url = f"/transfers/{tid}/receipt"
    assert_problem(await http.post(url, content=body, headers={"content-type": "text/plain"}), 415)
    for ok in ("application/json; charset=utf-8", "application/vnd.x+json"):
        response = await http.post(url, content=body, headers={"content-type": ok})
        assert response.status_code == 200 and response.json()["verified"]
    assert (await http.post(url, content=body)).status_code == 200  # no type at all: fine


async def test_wrong_methods_and_paths(http: httpx.AsyncClient, ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    doc = assert_problem(await http.delete(f"/transfers/{tid}"), 405)
    assert "GET" in doc["detail"]
    response = await http.get(f"/transfers/{tid}/receipt")
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"
    assert_problem(await http.get(f"/transfers/{tid}/receipt/extra"), 404)
    head = await http.head(f"/transfers/{tid}")
    assert head.status_code == 200


async def test_a_failing_store_is_503_not_500(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    await ledger.open()
    tid = await completed(ledger)
    await ledger.close()  # every call now raises LedgerError
    transport = httpx.ASGITransport(app=LedgerApp(ledger))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get(f"/{tid}")
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert_problem(await http.post(f"/{tid}/receipt", json=GOOD), 503)


async def test_routes_in_a_starlette_app(ledger: SQLiteLedger) -> None:
    tid = await completed(ledger)
    app = Starlette(routes=ledger_routes(ledger, prefix="/api/transfers"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get(f"/api/transfers/{tid}")).json()["id"] == tid
        response = await http.post(f"/api/transfers/{tid}/receipt", json=GOOD)
        assert response.json()["verified"] is True
    assert [r.name for r in ledger_routes(ledger)] == ["transfer", "transfer_receipt"]
    with pytest.raises(ValueError):
        ledger_routes(ledger, prefix="transfers/")


# -- on a real server ------------------------------------------------------------------


class Download:
    """What the streaming engine will do: record the transfer around the body it sends."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        self.ledger = ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tid = await self.ledger.begin("GET", scope["path"], size=len(BODY))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(BODY)).encode()),
                    (TRANSFER_ID_HEADER.encode(), tid.encode()),
                ],
            }
        )
        sent = 0
        for start in range(0, len(BODY), 4096):
            chunk = BODY[start : start + 4096]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            await self.ledger.progress(tid, sent)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        # The client may post its receipt before this line runs: receipt() waits for it.
        await self.ledger.finish(tid, "completed", sent, digest=DIGEST)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_download_then_verify_on_uvicorn(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with ledger:  # opened on the server's own event loop
            yield

    app = Starlette(
        routes=[Mount("/transfers", LedgerApp(ledger)), Route("/report.pdf", Download(ledger))],
        lifespan=lifespan,
    )
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(5):
            response = http.get("/report.pdf")
            tid = response.headers[TRANSFER_ID_HEADER]
            receipt = {
                "bytes_received": len(response.content),
                "digest": digest_of(response.content),
            }
            verdict = http.post(f"/transfers/{tid}/receipt", json=receipt)
            assert verdict.status_code == 200
            assert verdict.json()["verified"] is True
            record = http.get(f"/transfers/{tid}").json()
            assert record["state"] == "completed" and record["receipt"]["verified"] is True
        tampered = {"bytes_received": len(BODY), "digest": digest_of(b"evil")}
        verdict = http.post(f"/transfers/{tid}/receipt", json=tampered).json()
        assert (verdict["verified"], verdict["reason"]) == (False, "digest_mismatch")
        assert_problem(http.post(f"/transfers/{tid}/receipt", content=b"{oops"), 422)
