"""Ending every live stream when the server shuts down, before it waits for them.

Long-lived streams and graceful shutdown work against each other: a server shutting
down waits for open responses to finish, and an event stream never finishes by itself.
uvicorn, for one, waits for its connections *before* it sends the ASGI
``lifespan.shutdown`` message (up to ``timeout_graceful_shutdown``, forever by
default), so an app that ends its streams on that message ends them too late.

Two hooks, use the one your server allows:

:func:`graceful_uvicorn`
    For a ``uvicorn.Server`` you run yourself, or for the class (``sluicegate serve``
    does that, in each worker): when it
    starts shutting down it stops accepting, then every open
    :class:`~sluicegate.events.stream.EventStream` gets its final ``shutdown`` event
    with a ``retry`` hint and ends; the server's wait for connections then returns
    at once.
:func:`with_shutdown`
    An ASGI wrapper that does the same on ``lifespan.shutdown``: for servers that
    send it before waiting for connections, and for tests.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluicegate.events.stream import close_streams

__all__ = ["graceful_uvicorn", "with_shutdown"]


def with_shutdown(app: ASGIApp, *, retry: int = 1000) -> ASGIApp:
    """Wrap ``app`` so that ``lifespan.shutdown`` first closes every open event stream."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receive_and_close() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                close_streams(retry=retry)
            return message

        await app(scope, receive_and_close, send)

    return wrapped


def graceful_uvicorn(server: Any, *, retry: int = 1000) -> Any:
    """Make ``server`` end its event streams when it shuts down; return it.

    ``server`` is a ``uvicorn.Server``, or the class itself to do it for every server
    this process will make (what ``sluicegate serve --workers`` needs: uvicorn makes
    each worker's server). The listening sockets close first, so that clients told to
    retry come back to another worker rather than to this one. Idempotent.
    """
    original = server.shutdown
    if getattr(original, "_sluicegate_graceful", False):
        return server

    async def shutdown(self: Any, sockets: Any = None) -> None:
        for listener in getattr(self, "servers", []):
            listener.close()
        for sock in sockets or []:
            sock.close()
        close_streams(retry=retry)
        if isinstance(server, type):
            await original(self, sockets=sockets)
        else:
            await original(sockets=sockets)

    shutdown._sluicegate_graceful = True  # type: ignore[attr-defined]
    if isinstance(server, type):
        setattr(server, "shutdown", shutdown)  # noqa: B010  (a class: mypy knows no attribute)
    else:
        server.shutdown = shutdown.__get__(server)
    return server
