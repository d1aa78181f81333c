"""HTTP endpoints for the ledger: read a transfer's record, post a receipt, get a verdict.

Mount :class:`LedgerApp` anywhere, or add :func:`ledger_routes` to a Starlette app::

    app = Starlette(routes=[Mount("/transfers", LedgerApp(ledger))])
    # or
    app = Starlette(routes=[*ledger_routes(ledger, prefix="/transfers"), ...])

``GET /transfers/{id}`` answers the record as JSON; ``POST /transfers/{id}/receipt`` takes
``{"bytes_received": 1234, "digest": "sha-256=:...:"}`` and answers
``{"verified": true, "state": "completed", "reason": "verified", "detail": "..."}``.
Every error is an RFC 9457 ``application/problem+json`` body with a precise 4xx status
(503 if the store itself fails); nothing a client sends can cause a 500.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.http.problem import problem_response
from sluicegate.ledger.base import Ledger
from sluicegate.ledger.model import MAX_BYTES, is_transfer_id, parse_digest

__all__ = ["LedgerApp", "ledger_routes", "problem"]

log = logging.getLogger("sluicegate.ledger")

DEFAULT_MAX_BODY: Final = 4096
_ALL_METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_RECEIPT_KEYS: Final = frozenset({"bytes_received", "digest"})
_MAX_DIGEST: Final = 512


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem response: ``type``, ``title``, ``status`` and ``detail``."""
    return problem_response(
        status,
        HTTPStatus(status).phrase,
        detail,
        headers={"cache-control": "no-store", **(headers or {})},
    )


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers={"cache-control": "no-store"})


def _only(*methods: str) -> Response:
    allow = ", ".join(methods)
    return problem(405, f"use {allow}", headers={"allow": allow})


def ledger_routes(
    ledger: Ledger, *, prefix: str = "", max_body: int = DEFAULT_MAX_BODY
) -> list[Route]:
    """Starlette routes ``{prefix}/{id}`` (GET) and ``{prefix}/{id}/receipt`` (POST).

    ``max_body`` caps the receipt body in bytes; the ledger's lifecycle stays yours
    (open it in your app's lifespan).
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ConfigError("prefix must start with '/' and not end with one")

    async def read_record(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _only("GET", "HEAD")
        tid = request.path_params["transfer_id"]
        if not is_transfer_id(tid):
            return problem(404, "no transfer with that id")
        try:
            record = await ledger.get(tid)
        except UnknownTransfer:
            return problem(404, "no transfer with that id")
        except LedgerError as exc:
            return _unavailable(exc)
        return _json(record.to_json())

    async def post_receipt(request: Request) -> Response:
        if request.method != "POST":
            return _only("POST")
        tid = request.path_params["transfer_id"]
        if not is_transfer_id(tid):
            return problem(404, "no transfer with that id")
        parsed = await _read_receipt(request, max_body)
        if isinstance(parsed, Response):
            return parsed
        bytes_received, digest = parsed
        try:
            verdict = await ledger.receipt(tid, bytes_received, digest)
        except UnknownTransfer:
            return problem(404, "no transfer with that id")
        except ConfigError as exc:  # already checked above; kept so nothing becomes a 500
            return problem(422, str(exc))
        except LedgerError as exc:
            return _unavailable(exc)
        return _json(verdict.to_json())

    return [
        Route(prefix + "/{transfer_id}", read_record, methods=_ALL_METHODS, name="transfer"),
        Route(
            prefix + "/{transfer_id}/receipt",
            post_receipt,
            methods=_ALL_METHODS,
            name="transfer_receipt",
        ),
    ]


async def _read_receipt(request: Request, max_body: int) -> tuple[int, str] | Response:
    """The receipt's two fields, or the problem response that explains what is wrong."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        return problem(415, "send the receipt as application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_body):
        return problem(413, f"a receipt is at most {max_body} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return problem(413, f"a receipt is at most {max_body} bytes")
    except ClientDisconnect:
        return problem(400, "the client went away while sending the receipt")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and huge ints too
        return problem(422, "the body is not valid JSON")
    if not isinstance(data, dict):
        return problem(422, "the body must be a JSON object")
    if missing := sorted(_RECEIPT_KEYS - data.keys()):
        return problem(422, f"missing field: {', '.join(missing)}")
    if extra := sorted(data.keys() - _RECEIPT_KEYS):
        return problem(422, f"unknown field: {', '.join(extra)[:100]}")
    count = data["bytes_received"]
    if isinstance(count, bool) or not isinstance(count, int):
        return problem(422, "bytes_received must be an integer")
    if not 0 <= count <= MAX_BYTES:
        return problem(422, "bytes_received must be between 0 and 2**63-1")
    digest = data["digest"]
    if not isinstance(digest, str) or len(digest) > _MAX_DIGEST:
        return problem(422, "digest must be a string like sha-256=:<base64>:")
    try:
        parse_digest(digest)
    except ValueError as exc:
        return problem(422, f"bad digest: {exc}")
    return count, digest


def _unavailable(exc: LedgerError) -> Response:
    # The store is down or locked: the client may retry; the details stay in our logs.
    log.warning("ledger unavailable: %s", exc)
    return problem(503, "the transfer ledger is unavailable", headers={"retry-after": "1"})


class LedgerApp:
    """An ASGI app serving :func:`ledger_routes`; mount it, e.g. at ``/transfers``.

    Unmatched paths and methods get problem+json answers too. The app does not open or
    close ``ledger``: do that in the host application's lifespan.
    """

    def __init__(self, ledger: Ledger, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.ledger = ledger
        self._router = Router(routes=ledger_routes(ledger, max_body=max_body), default=_not_found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await problem(404, "no such ledger endpoint")(scope, receive, send)
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
