"""LedgerMount: the ledger's routes in front of any app, its life tied to the lifespan."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sluicegate.ledger import LedgerMount, SQLiteLedger
from tests.asgi import call


class Lifespan:
    """Plays the server's side of the ASGI lifespan protocol."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[str] = []
        self.got = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message["type"])
        self.got.set()

    async def reply_to(self, message_type: str) -> str:
        self.got.clear()
        await self.inbox.put({"type": message_type})
        await asyncio.wait_for(self.got.wait(), 5)
        return self.sent[-1]


def app_with_lifespan(log: list[str], *, fail_startup: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            if fail_startup:
                await send({"type": "lifespan.startup.failed", "message": "no db"})
                return
            log.append("app startup")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            log.append("app shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def plain_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "a plain ASGI app that knows no lifespan"
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_the_ledger_opens_before_the_app_and_closes_after_it(tmp_path: Path) -> None:
    log: list[str] = []
    ledger = SQLiteLedger(tmp_path / "t.db")
    mount = LedgerMount(app_with_lifespan(log), ledger)
    server = Lifespan()
    task = asyncio.create_task(mount({"type": "lifespan"}, server.receive, server.send))
    assert await server.reply_to("lifespan.startup") == "lifespan.startup.complete"
    assert repr(ledger) == "<SQLiteLedger open>" and log == ["app startup"]
    assert await server.reply_to("lifespan.shutdown") == "lifespan.shutdown.complete"
    await asyncio.wait_for(task, 5)
    assert repr(ledger) == "<SQLiteLedger closed>" and log == ["app startup", "app shutdown"]


async def test_an_app_without_lifespan_is_served_and_the_ledger_still_opens(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(tmp_path / "t.db")
    mount = LedgerMount(plain_app, ledger)
    server = Lifespan()
    task = asyncio.create_task(mount({"type": "lifespan"}, server.receive, server.send))
    assert await server.reply_to("lifespan.startup") == "lifespan.startup.complete"
    assert repr(ledger) == "<SQLiteLedger open>"
    assert (await call(mount, path="/hello")).status == 204
    assert await server.reply_to("lifespan.shutdown") == "lifespan.shutdown.complete"
    await asyncio.wait_for(task, 5)
    assert repr(ledger) == "<SQLiteLedger closed>"


async def test_a_failed_app_startup_fails_and_closes_the_ledger(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "t.db")
    mount = LedgerMount(app_with_lifespan([], fail_startup=True), ledger)
    server = Lifespan()
    task = asyncio.create_task(mount({"type": "lifespan"}, server.receive, server.send))
    assert await server.reply_to("lifespan.startup") == "lifespan.startup.failed"
    await asyncio.wait_for(task, 5)
    assert repr(ledger) == "<SQLiteLedger closed>"


async def test_a_ledger_that_cannot_open_fails_the_startup(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "missing-dir" / "t.db")
    server = Lifespan()
    mount = LedgerMount(app_with_lifespan([]), ledger)
    task = asyncio.create_task(mount({"type": "lifespan"}, server.receive, server.send))
    assert await server.reply_to("lifespan.startup") == "lifespan.startup.failed"
    await asyncio.wait_for(task, 5)


async def test_requests_under_the_path_go_to_the_ledger_and_the_rest_to_the_app(
    tmp_path: Path,
) -> None:
    async with SQLiteLedger(tmp_path / "t.db") as ledger:
        mount = LedgerMount(plain_app, ledger, "/transfers/")
        missing = await call(mount, path="/transfers/AAAAAAAAAAAAAAAAAAAAAA")
        assert missing.status == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert (await call(mount, path="/transfersX")).status == 204
        assert (await call(mount, path="/")).status == 204
