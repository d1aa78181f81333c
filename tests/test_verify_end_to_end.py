"""The whole story on a real socket: stream, record, fetch --verify, receipt, verdict."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from sluicegate import StreamResponse
from sluicegate.client import ExitCode, fetch
from sluicegate.ledger import LedgerApp, SQLiteLedger
from tests.servers import running


def make_app(ledger: SQLiteLedger) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with ledger:  # opened on the server's own loop
            yield

    async def whole(request: Any) -> StreamResponse:
        async def body() -> AsyncIterator[bytes]:
            for i in range(40):
                yield bytes([i]) * 25_000
                await asyncio.sleep(0)

        return StreamResponse(body(), ledger=ledger)

    async def broken(request: Any) -> StreamResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"x" * 50_000
            await asyncio.sleep(0.05)
            raise RuntimeError("storage node lost")

        return StreamResponse(body(), ledger=ledger)

    return Starlette(
        routes=[
            Route("/report.bin", whole),
            Route("/broken.bin", broken),
            Mount("/transfers", LedgerApp(ledger)),
        ],
        lifespan=lifespan,
    )


def test_fetch_verifies_against_the_ledger_and_the_ledger_keeps_the_receipt(
    tmp_path: Path,
) -> None:
    async def record(base: str, tid: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{base}/transfers/{tid}")
            r.raise_for_status()
            doc: dict[str, Any] = r.json()
            return doc

    async def scenario(port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        out = tmp_path / "report.bin"
        result = await fetch(f"{base}/report.bin", output=out, verify=True, check=False)
        assert result.exit_code == ExitCode.OK, result.error
        assert result.verified is True and result.digest_source == "ledger"
        assert out.stat().st_size == 1_000_000
        done = await record(base, dict(result.headers)["transfer-id"])
        assert done["state"] == "completed" and done["receipt"]["verified"] is True

        broken = await fetch(f"{base}/broken.bin", output=tmp_path / "b.bin", check=False)
        assert broken.exit_code == ExitCode.INCOMPLETE
        assert not (tmp_path / "b.bin").exists()
        failed = await record(base, dict(broken.headers)["transfer-id"])
        assert failed["state"] == "failed" and failed["bytes_sent"] == 50_000

    with running(make_app(SQLiteLedger(tmp_path / "ledger.db")), lifespan="on") as port:
        asyncio.run(scenario(port))
