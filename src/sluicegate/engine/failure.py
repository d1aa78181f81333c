"""What a response does when its producer fails after the headers went out.

The status line has gone; what is left is how the body ends:

``"abort"`` (the default)
    The connection is closed without the terminating zero-length chunk (or short of
    ``Content-Length``). Every HTTP client sees an incomplete transfer: ``curl``
    exits 18, httpx raises ``RemoteProtocolError``, a browser marks the download
    failed. Right for binary downloads, where a partial file must never pass as whole.
``"inband"``
    For formats that have a place for an error: an ``event: error`` for
    ``text/event-stream``, a final ``{"error": …}`` line for NDJSON. The body then
    ends normally, since its reader learns of the failure from the data itself.
    Other media types abort.
a callable ``(exc) -> bytes | str | None``
    Its result is written as the last chunk and the body ends normally; ``None``
    aborts.

>>> inband_record("text/event-stream", ValueError("no rows"))
b'event: error\\ndata: {"error":"ValueError","message":"no rows"}\\n\\n'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal, TypeAlias

from sluicegate.errors import ConfigError

OnError: TypeAlias = Literal["abort", "inband"] | Callable[[BaseException], bytes | str | None]

_MAX_MESSAGE = 200


def _summary(exc: BaseException) -> dict[str, str]:
    # The class and the first line of the message, trimmed: enough for a reader to
    # act on, short enough not to leak a stack or a query.
    message = str(exc).splitlines()[0] if str(exc) else ""
    return {"error": type(exc).__name__, "message": message[:_MAX_MESSAGE]}


def inband_record(media_type: str | None, exc: BaseException) -> bytes | None:
    """The error record for formats that carry one in band, else None."""
    kind = (media_type or "").split(";", 1)[0].strip().lower()
    doc = json.dumps(_summary(exc), separators=(",", ":"))
    if kind == "text/event-stream":
        return f"event: error\ndata: {doc}\n\n".encode()
    if kind in ("application/x-ndjson", "application/jsonl", "application/jsonlines"):
        return f"{doc}\n".encode()
    return None


def final_chunk(
    policy: OnError, media_type: str | None, exc: BaseException, charset: str
) -> bytes | None:
    """What to write before ending the body normally; None means abort."""
    if policy == "abort":
        return None
    if policy == "inband":
        return inband_record(media_type, exc)
    result = policy(exc)
    if result is None:
        return None
    return result.encode(charset) if isinstance(result, str) else bytes(result)


def check_policy(policy: object) -> OnError:
    """Validate ``on_error`` up front: a one-line :class:`ConfigError` if it is wrong."""
    if policy in ("abort", "inband") or callable(policy):
        return policy
    raise ConfigError(f"on_error must be 'abort', 'inband' or a callable, not {policy!r}")
