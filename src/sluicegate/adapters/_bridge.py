"""What the adapters share: running a :class:`~sluicegate.StreamResponse` under a
framework that already owns the ASGI ``receive``.

Django and Quart read ``receive`` in a task of their own and cancel the view's task
when the client leaves; a second reader would race them for the one
``http.disconnect`` message (hypercorn hands each message to one reader only). So the
response gets a ``receive`` that never returns: the framework's cancellation is what
stops it, and cancellation closes the producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from sluicegate.engine.response import StreamResponse

__all__ = ["never_receive", "raw_headers"]


async def never_receive() -> dict[str, Any]:
    """An ASGI ``receive`` that waits until it is cancelled."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover


def raw_headers(
    response: StreamResponse, framework_headers: Iterable[tuple[str | bytes, str | bytes]]
) -> list[tuple[bytes, bytes]]:
    """The framework's headers (middleware, cookies) over the response's own.

    The framework's win for a name they both set, except ``content-length``, which
    only sluicegate can decide (at the commit).
    """
    theirs = [
        (_latin1(k).lower(), _latin1(v))
        for k, v in framework_headers
        if _latin1(k).lower() != b"content-length"
    ]
    names = {k for k, _ in theirs}
    ours = [(k, v) for k, v in response.raw_headers if k not in names]
    return ours + theirs


def _latin1(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)
