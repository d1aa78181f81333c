"""Litestar: OpenAPI entries for handlers that return a sluicegate response.

Litestar runs a returned :class:`~sluicegate.StreamResponse` as it is (it is an ASGI
app), but documents the handler from its return annotation, which says nothing about
the body: ``application/json`` with an empty schema. :func:`streamed` gives the route
decorator what it needs to document the stream::

    from litestar import get
    from sluicegate import StreamResponse
    from sluicegate.adapters.litestar import streamed

    @get("/export.csv", **streamed("text/csv", "Every customer, one CSV row each"))
    async def export() -> StreamResponse:
        return StreamResponse(rows(), media_type="text/csv")

The 200 entry then carries the media type, a string schema and the description; the
failures sluicegate itself answers before the first byte (``500`` when the producer
fails, ``503`` when a budget refuses the stream) are documented as
``application/problem+json``.
"""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec

__all__ = ["streamed"]


def streamed(media_type: str, description: str = "The body, streamed") -> dict[str, Any]:
    """Keyword arguments for a Litestar route decorator whose handler streams ``media_type``."""
    return {
        "media_type": media_type,
        "responses": {
            200: ResponseSpec(
                data_container=str,
                media_type=media_type,
                description=description,
                generate_examples=False,
            ),
            500: ResponseSpec(
                data_container=dict[str, Any],
                media_type="application/problem+json",
                description="The producer failed before the first byte was sent",
                generate_examples=False,
            ),
            503: ResponseSpec(
                data_container=dict[str, Any],
                media_type="application/problem+json",
                description="A stream budget refused the request (see Retry-After)",
                generate_examples=False,
            ),
        },
    }
