"""RFC 9457 problem details: the one shape of every error body sluicegate writes."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import Send

MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str | None = None, **extra: Any) -> bytes:
    """The JSON body of a problem; ``type`` is ``about:blank`` unless given in ``extra``."""
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A Starlette response carrying a problem document.

    >>> problem_response(404, "Not Found", "no transfer abc").status_code
    404
    """
    return Response(
        problem_body(status, title, detail, **extra),
        status_code=status,
        headers=headers,
        media_type=MEDIA_TYPE,
    )


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> None:
    """Send a whole problem response through an ASGI ``send``."""
    body = problem_body(status, title, detail, **extra)
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", b"%d" % len(body))]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
