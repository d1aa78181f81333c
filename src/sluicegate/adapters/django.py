"""Django: an async view returns a sluicegate response, through Django's middleware.

Django's ASGI handler sends a streaming response one ``send()`` per chunk, with no
byte budget, and cannot run an ASGI app as a response. So this module has two parts:

* :class:`StreamingResponse`, a ``django.http.StreamingHttpResponse`` that carries a
  :class:`~sluicegate.StreamResponse`. Middleware sees an ordinary streaming
  response: it may add headers and cookies or change the status, and one that
  replaces ``streaming_content`` (``GZipMiddleware``) has its stream sent instead;
* :class:`ASGIHandler` (and :func:`get_asgi_application`, the drop-in for Django's),
  which Django's own: it sends that response with sluicegate's pump, on the real ASGI
  ``send``.

In ``asgi.py``::

    from sluicegate.adapters.django import get_asgi_application
    application = get_asgi_application()

and in a view::

    from sluicegate.adapters.django import StreamingResponse

    async def export(request):
        return StreamingResponse(rows(), media_type="text/csv")

Django's handler already watches for the client leaving and cancels the view's task;
the cancellation closes the producer. A failure after the first byte propagates out
of the handler, so the server aborts the body (curl exits 18). Under Django's stock
handler the response still streams, Django's way, with one warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from django.core.handlers.asgi import ASGIHandler as _DjangoASGIHandler
from django.http import StreamingHttpResponse

from sluicegate.adapters._bridge import never_receive, raw_headers
from sluicegate.engine import caveats
from sluicegate.engine.response import StreamResponse

__all__ = ["ASGIHandler", "StreamingResponse", "get_asgi_application"]

logger = logging.getLogger("sluicegate")

# The scope of the request being handled: Django's send_response() is not given it.
_scope: ContextVar[dict[str, Any]] = ContextVar("sluicegate_django_scope")


class StreamingResponse(StreamingHttpResponse):  # type: ignore[misc]
    """A Django response streamed by sluicegate.

    ``content`` is anything :class:`~sluicegate.StreamResponse` takes; ``options``
    are its keyword arguments (``high_water_mark``, ``on_error``, ``guard``…).
    Async views only: a sync view's iterator would be run per chunk in a thread.
    """

    def __init__(
        self,
        content: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        **options: Any,
    ) -> None:
        self._options = options
        self._content = content
        # Built now so that bad options fail in the view, not mid-request.
        self.sluicegate = StreamResponse(
            content, status_code=status, media_type=media_type, **options
        )
        self._media_type = media_type
        content_type = dict(self.sluicegate.raw_headers).get(b"content-type", b"")
        iterable = content if _is_iterable(content) else ()
        super().__init__(
            iterable, content_type=content_type.decode("latin-1"), status=status, headers=headers
        )
        self._replaced = False

    def _set_streaming_content(self, value: Any) -> None:
        super()._set_streaming_content(value)
        # Set by middleware after __init__ (GZipMiddleware): that stream is the body now.
        self._replaced = hasattr(self, "_replaced")

    def as_asgi(self) -> StreamResponse:
        """The sluicegate response to send: Django's status and headers, our stream."""
        response = self.sluicegate
        if self._replaced:
            response = StreamResponse(
                self.streaming_content,
                status_code=self.status_code,
                media_type=self._media_type,
                **self._options,
            )
        response.status_code = self.status_code
        cookies = [("set-cookie", c.output(header="").strip()) for c in self.cookies.values()]
        response.raw_headers = raw_headers(response, [*self.items(), *cookies])
        return response

    async def stream(self, scope: dict[str, Any], send: Any) -> None:
        """Send this response on ``send`` with sluicegate's pump."""
        await self.as_asgi()(scope, never_receive, send)

    def __aiter__(self) -> Any:
        # Only Django's stock handler iterates us: it still works, without the budget.
        caveats.warn_once(
            "django-stock-handler",
            "a sluicegate StreamingResponse is being sent by Django's own ASGI handler, "
            "one send() per chunk, without sluicegate's byte budget: serve "
            "sluicegate.adapters.django.get_asgi_application() instead",
        )
        return super().__aiter__()


class ASGIHandler(_DjangoASGIHandler):  # type: ignore[misc]
    """Django's ASGI handler, which sends a :class:`StreamingResponse` with sluicegate."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection, remembering its scope for the response."""
        token = _scope.set(scope)
        try:
            await super().__call__(scope, receive, send)
        finally:
            _scope.reset(token)

    async def send_response(self, response: Any, send: Any) -> None:
        """Send ``response``: sluicegate's way if it is one of ours, else Django's."""
        if isinstance(response, StreamingResponse):
            await response.stream(_scope.get(), send)
        else:
            await super().send_response(response, send)


def get_asgi_application() -> ASGIHandler:
    """Set Django up and return the handler (as ``django.core.asgi.get_asgi_application``)."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()


def _is_iterable(content: Any) -> bool:
    if isinstance(content, str | bytes | bytearray | memoryview):
        return False
    return hasattr(content, "__aiter__") or hasattr(content, "__iter__")
