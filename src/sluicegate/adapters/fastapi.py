"""FastAPI: generator endpoints that hold one chunk, and OpenAPI entries that say what streams.

Two things FastAPI gets wrong with a plain :class:`~sluicegate.StreamResponse`:

* **Generator endpoints** (``response_class=StreamResponse`` on an ``async def`` that
  ``yield``\\ s) reach the response wrapped in a generator of FastAPI's own, which
  keeps a reference to the last chunk while the endpoint makes the next one: two
  chunks in memory instead of one. The response class here unwraps FastAPI's generator
  before streaming (sluicegate needs none of what it adds: it notices the client
  leaving on its own), so the endpoint's generator is pulled directly.
* **OpenAPI**: FastAPI documents the response class's ``media_type`` *class*
  attribute, so a route returning a ``StreamResponse`` is documented as
  ``application/json``, and one with ``response_class=StreamResponse`` as
  ``application/octet-stream`` whatever it really sends.

:func:`streaming` fixes both: a response class with the media type you stream::

    from sluicegate.adapters.fastapi import streaming

    @app.get("/export.csv", response_class=streaming("text/csv"))
    async def export():
        async for row in db.fetch("SELECT ..."):
            yield f"{row.id},{row.name}\\n"

A route that returns a response itself documents the same way with
``response_class=streaming(...)``. The unwrapping relies on the name of FastAPI's
wrapper (``_async_stream_raw``, FastAPI 0.120 and later); with any other, the
endpoint streams as before, holding two chunks. Like every sluicegate response they
check their stack (:mod:`sluicegate.engine.caveats`) and warn once under
``BaseHTTPMiddleware``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from starlette.background import BackgroundTask

from sluicegate.engine.response import StreamResponse as _StreamResponse

__all__ = ["StreamResponse", "streaming"]

# The async generator FastAPI wraps a generator endpoint in, and its argument's name.
_WRAPPER = "_async_stream_raw"
_WRAPPED_ARG = "async_gen"


class StreamResponse(_StreamResponse):
    """:class:`sluicegate.StreamResponse` for FastAPI: unwraps generator endpoints."""

    # The parameters FastAPI reads by name: its OpenAPI takes the default status from
    # this signature, and it passes status_code/headers/background to generator routes.
    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        **options: Any,
    ) -> None:
        super().__init__(_unwrap(content), status_code, headers, media_type, background, **options)


@functools.lru_cache(maxsize=128)
def streaming(media_type: str) -> type[StreamResponse]:
    """A response class that streams, and is documented, as ``media_type``."""
    name = f"StreamResponse[{media_type}]"
    return type(name, (StreamResponse,), {"media_type": media_type, "__doc__": name})


def _unwrap(content: Any) -> Any:
    """The endpoint's own async generator, if ``content`` is FastAPI's unstarted wrapper."""
    code = getattr(content, "ag_code", None)
    frame = getattr(content, "ag_frame", None)
    if code is None or frame is None or code.co_name != _WRAPPER:
        return content
    if "fastapi" not in code.co_filename or not _unstarted(content):
        return content
    inner = frame.f_locals.get(_WRAPPED_ARG)
    if inner is None or not hasattr(inner, "__anext__"):
        return content
    # Never started, so never registered with the loop's asyncgen hooks: dropping
    # the wrapper needs no aclose().
    return inner


def _unstarted(agen: Any) -> bool:
    state = getattr(inspect, "getasyncgenstate", None)  # Python 3.12+
    if state is not None:
        return bool(state(agen) == "AGEN_CREATED")
    return not agen.ag_running and agen.ag_frame is not None and agen.ag_frame.f_lasti <= 0
