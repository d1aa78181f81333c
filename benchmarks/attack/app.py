"""The app the attack suite serves: the examples, a ledger, static files and a spool.

Served with ``sluicegate serve --app benchmarks.attack.app:app`` so that every attack
goes through the same server, flags and protocol as a user's. Paths:

``/hello``, ``/download``    the example app (:mod:`sluicegate.cli.examples`)
``/transfers/...``           a SQLite ledger's routes (records, receipts); every
                             ``/download`` is recorded in it
``/static/...``              :class:`~sluicegate.StaticDirectory` over a small tree
``/spooled``, ``/spool/...`` a :class:`~sluicegate.http.spool.Spool` over a generated feed

The database, the static tree and the spool live under ``$ATTACK_DIR`` (a temporary
directory the suite makes and removes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sluicegate.cli import examples
from sluicegate.engine.response import defaults
from sluicegate.http.files import StaticDirectory
from sluicegate.http.spool import Spool
from sluicegate.ledger import LedgerApp
from sluicegate.ledger.sqlite import SQLiteLedger

STATIC_FILES = {"a.txt": b"static file a\n" * 1000, "sub/b.bin": bytes(range(256)) * 4096}


def make_static_tree(root: Path) -> None:
    """The files ``/static/`` serves, and one outside it that must never leak."""
    for name, data in STATIC_FILES.items():
        path = root / "static" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "secret.txt").write_bytes(b"TOP-SECRET outside the static root\n")


class AttackApp:
    """Route by path prefix; open the ledger and the spool at lifespan startup."""

    def __init__(self) -> None:
        self.ledger: SQLiteLedger | None = None
        self.routes: dict[str, Any] = {}
        self.spool: Spool | None = None

    async def _startup(self) -> None:
        root = Path(os.environ.get("ATTACK_DIR", "/tmp/sluicegate-attack"))
        make_static_tree(root)
        # Settle quickly: the kill -9 check reads records right after the transfers.
        self.ledger = SQLiteLedger(root / "ledger.db")
        await self.ledger.__aenter__()
        defaults.ledger = self.ledger
        spool = Spool(root / "spool", max_total_bytes=64 << 20)
        self.routes = {
            "/transfers": LedgerApp(self.ledger),
            "/static": StaticDirectory(root / "static"),
            "/spool": spool,
        }
        self.spool = spool

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self._startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.spool is not None:
                        await self.spool.aclose()
                    if self.ledger is not None:
                        await self.ledger.__aexit__(None, None, None)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        if path == "/spooled" and self.spool is not None:
            await self.spool.stream(examples.generated(3 << 20, 64 << 10), size=3 << 20)(
                scope, receive, send
            )
            return
        for prefix, sub in self.routes.items():
            if path == prefix or path.startswith(prefix + "/"):
                # Starlette's Mount convention: the full path, the prefix in root_path.
                child = dict(scope, root_path=scope.get("root_path", "") + prefix)
                await sub(child, receive, send)
                return
        await examples.app(scope, receive, send)


app = AttackApp()
