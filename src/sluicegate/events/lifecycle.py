"""Ending every live stream when the server shuts down, before it waits for them.

Long-lived streams and graceful shutdown work against each other: a server shutting
down waits for open responses to finish, and an event stream never finishes by itself.
uvicorn, for one, waits for its connections *before* it sends the ASGI
``lifespan.shutdown`` message (up to ``timeout_graceful_shutdown``, forever by
default), so an app that ends its streams on that message ends them too late.

Two hooks, use the one your server allows:

:func:`graceful_uvicorn`
    For a ``uvicorn.Server`` you run yourself (``sluicegate serve`` does): when it
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
    """Make ``server`` (a ``uvicorn.Server``) end its event streams when it shuts down.

    Returns the server. The listening sockets close first, so that clients told to
    retry come back to another worker rather than to this one.
    """
    original = server.shutdown

    async def shutdown(sockets: Any = None) -> None:
        for listener in getattr(server, "servers", []):
            listener.close()
        for sock in sockets or []:
            sock.close()
        close_streams(retry=retry)
        await original(sockets=sockets)

    server.shutdown = shutdown
    return server
