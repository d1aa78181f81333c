"""Put the ledger in front of any ASGI app: its routes mounted, its life tied to the server's.

``sluicegate serve --ledger`` serves apps it did not write, so it cannot add a
``Mount`` to their routes or an ``async with ledger`` to their lifespan. This wrapper
does both from outside::

    app = LedgerMount(user_app, SQLiteLedger("transfers.db"))   # /transfers/... + user_app

* HTTP requests under ``path`` go to :class:`~sluicegate.ledger.routes.LedgerApp`,
  everything else to the app;
* the ASGI lifespan opens the ledger first and closes it last, around the app's own
  startup and shutdown. An app that does not speak the lifespan protocol (it raises
  on that scope, as many plain ASGI apps do) is served all the same: uvicorn would
  carry on without lifespan for it, and so does this wrapper, for the app's part.

A ledger that cannot open fails the startup (``lifespan.startup.failed``): the server
then stops instead of serving transfers it cannot record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluicegate.ledger.base import Ledger
from sluicegate.ledger.routes import LedgerApp

__all__ = ["LedgerMount"]

logger = logging.getLogger("sluicegate")


class LedgerMount:
    """``app`` with ``ledger``'s routes under ``path`` and the ledger opened at startup."""

    def __init__(self, app: ASGIApp, ledger: Ledger, path: str = "/transfers") -> None:
        self.app = app
        self.ledger = ledger
        self.path = "/" + path.strip("/")
        self._mount = Mount(self.path, app=LedgerApp(ledger))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request, or run the lifespan."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http":
            match, child = self._mount.matches(scope)
            if match == Match.FULL:
                await self._mount.handle({**scope, **child}, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.ledger.open()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": f"ledger: {exc}"})
            return
        inner = _InnerLifespan(self.app, scope)
        reply = await inner.ask({"type": "lifespan.startup"})
        if reply is not None and reply["type"] == "lifespan.startup.failed":
            await self.ledger.close()
            await send(reply)
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        reply = await inner.ask({"type": "lifespan.shutdown"})
        await self.ledger.close()
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            await send(reply)
        else:
            await send({"type": "lifespan.shutdown.complete"})


class _InnerLifespan:
    """The wrapped app's lifespan, run as a task that is asked one question at a time."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(app, scope), name="sluicegate-app-lifespan"
        )

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        await app(scope, self._inbox.get, self._outbox.put)

    async def ask(self, message: Message) -> Message | None:
        """Send ``message``; the app's reply, or None if it does not speak lifespan."""
        task = self._task
        if task is None:
            return None
        await self._inbox.put(message)
        reply: asyncio.Task[Message] = asyncio.create_task(self._outbox.get())
        await asyncio.wait({reply, task}, return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            return reply.result()
        reply.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reply
        self._task = None
        error: Any = task.exception() if not task.cancelled() else None
        # As uvicorn does for lifespan="auto": an app that fails on this scope does
        # not use it. Said at debug level: that is normal for a plain ASGI app.
        logger.debug("the app does not speak the lifespan protocol (%r); serving it anyway", error)
        return None
