"""Quart: return a sluicegate response from a view.

Quart accepts only its own responses, and sends a streaming one a ``send()`` per
chunk under a ``RESPONSE_TIMEOUT`` (60 s by default) that ends a long download
silently. :func:`install` teaches an app both to accept a
:class:`~sluicegate.StreamResponse` (alone, or in a ``(response, status, headers)``
tuple) and to send it with sluicegate's pump::

    from quart import Quart
    from sluicegate import StreamResponse
    from sluicegate.adapters.quart import install

    app = Quart(__name__)
    install(app)

    @app.get("/export.csv")
    async def export():
        return StreamResponse(rows(), media_type="text/csv")

The view's response is wrapped in a :class:`StreamingResponse` (a Quart response),
so ``after_request`` functions may add headers or change the status. Quart's own
task watches for the client leaving and cancels the view; the cancellation closes
the producer. A failure after the first byte propagates out of the app, so the
server aborts the body. sluicegate's guard, not ``RESPONSE_TIMEOUT``, bounds slow
readers.
"""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart import Response as QuartResponse
from quart.asgi import ASGIHTTPConnection
from quart.utils import encode_headers
from quart.wrappers.response import ResponseBody
from werkzeug.datastructures import Headers

from sluicegate.adapters._bridge import never_receive, raw_headers
from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError

__all__ = ["Connection", "StreamingResponse", "install"]


class _SentBySluicegate(ResponseBody):
    """The body of a :class:`StreamingResponse`: only :class:`Connection` may send it."""

    async def __aenter__(self) -> Any:
        raise ConfigError("a sluicegate response needs sluicegate.adapters.quart.install(app)")

    async def __aexit__(self, *exc: object) -> None:
        return None


class StreamingResponse(QuartResponse):
    """A Quart response that carries a :class:`~sluicegate.StreamResponse`."""

    def __init__(self, stream: StreamResponse) -> None:
        ours = dict(stream.raw_headers)
        content_type = ours.get(b"content-type", b"application/octet-stream")
        # A list keeps repeated names (Link, Set-Cookie) that a dict would merge.
        headers = Headers(
            [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in stream.raw_headers
                if k != b"content-type"
            ]
        )
        super().__init__(
            _SentBySluicegate(),
            status=stream.status_code,
            headers=headers,
            content_type=content_type.decode("latin-1"),
        )
        #: the sluicegate response this one sends
        self.sluicegate = stream
        # Quart's RESPONSE_TIMEOUT would end a long download without a word.
        self.timeout = None


class Connection(ASGIHTTPConnection):
    """Quart's ASGI HTTP connection, which sends a :class:`StreamingResponse` with sluicegate."""

    async def _send_response(self, send: Any, response: Any) -> None:
        if not isinstance(response, StreamingResponse):
            await super()._send_response(send, response)
            return
        scope: dict[str, Any] = dict(self.scope)
        stream = response.sluicegate
        stream.status_code = response.status_code
        stream.raw_headers = raw_headers(stream, encode_headers(response.headers))
        await stream(scope, never_receive, send)


def install(app: Quart) -> Quart:
    """Let ``app``'s views return sluicegate responses; returns ``app``."""
    app.asgi_http_class = Connection
    make_response = app.make_response

    async def make_sluicegate_response(value: Any) -> Any:
        if isinstance(value, StreamResponse):
            value = StreamingResponse(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], StreamResponse):
            value = (StreamingResponse(value[0]), *value[1:])
        return await make_response(value)

    app.make_response = make_sluicegate_response  # type: ignore[method-assign,assignment]
    return app
