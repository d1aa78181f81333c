"""aiohttp: stream a sluicegate response from an aiohttp handler.

aiohttp is not ASGI, so this module is a small ASGI server for one response: it runs
the :class:`~sluicegate.StreamResponse` with a ``send`` that drives aiohttp's own
``web.StreamResponse``: ``prepare()`` for the head, ``write()`` for each message.
``write()`` waits while aiohttp's transport is over its write buffer limit, so the
pump's byte budget holds exactly as on an ASGI server::

    from aiohttp import web
    from sluicegate import StreamResponse
    from sluicegate.adapters.aiohttp import stream

    async def export(request: web.Request) -> web.StreamResponse:
        return await stream(request, StreamResponse(rows(), media_type="text/csv"))

The client leaving closes the producer whether or not the server cancels handlers
(``handler_cancellation``, off by default since aiohttp 3.9): with it the handler's
task is cancelled; without it a ``write()`` to the closed connection fails, and a
producer that is between chunks is stopped by a watcher that checks the connection
every :data:`POLL_INTERVAL` seconds (aiohttp tells a handler of a lost connection
only through its request body, which a GET has none of). A failure after the head
closes the connection without the terminating chunk, so the client sees an
incomplete transfer, and the error propagates for aiohttp to log.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any, Final

from aiohttp import web

from sluicegate.engine.response import StreamResponse

__all__ = ["POLL_INTERVAL", "scope_of", "stream"]

#: How often a stream checks whether its client is still connected (seconds).
POLL_INTERVAL: Final = 0.05


def scope_of(request: web.BaseRequest) -> dict[str, Any]:
    """An ASGI HTTP scope describing an aiohttp request."""
    server = request.transport.get_extra_info("sockname") if request.transport else None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return {
        "type": "http",
        # 2.4: send() raises OSError once the client is gone, as aiohttp's write() does.
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(server[:2]) if server else None,
        "extensions": {},
    }


class _Bridge:
    """ASGI ``receive`` and ``send`` over one aiohttp request."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self._asked = False

    async def receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # aiohttp offers no event for a lost connection: look (see the module docstring).
        while self._connected():  # noqa: ASYNC110
            await asyncio.sleep(POLL_INTERVAL)
        return {"type": "http.disconnect"}

    def _connected(self) -> bool:
        transport = self.request.transport
        return transport is not None and not transport.is_closing()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", []):
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            self.response = response
            await response.prepare(self.request)
        elif kind == "http.response.body":
            started = self.response
            if started is None:
                raise RuntimeError("http.response.body before http.response.start")
            body = message.get("body", b"")
            if body:
                await started.write(body)
            if not message.get("more_body", False):
                await started.write_eof()
        # Trailers are not offered (no "http.response.trailers" in the scope's extensions).


async def stream(request: web.BaseRequest, response: StreamResponse) -> web.StreamResponse:
    """Send ``response`` for ``request``; return aiohttp's response for the handler to return."""
    bridge = _Bridge(request)
    try:
        await response(scope_of(request), bridge.receive, bridge.send)
    except Exception:
        sent = bridge.response
        if sent is not None and sent.prepared:
            # After the head: the only honest signal left is a connection closed
            # without the terminating chunk (or short of Content-Length).
            transport = request.transport
            if transport is not None:
                transport.close()
        raise
    if bridge.response is None:
        # The client left before anything was sent: nothing for aiohttp to send either.
        raise ConnectionResetError("the client went away before the response started")
    return bridge.response
