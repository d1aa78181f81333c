"""Range support for content that knows its size and can start anywhere.

A file can be read from any offset; so can much generated content: a ZIP whose layout
is computed from a file list (:mod:`sluicegate.http.zipstream`), a tar of known members, a
report rendered from a snapshot. Describe it as a :class:`SeekableSource` and
:class:`SeekableResponse` answers ``Range``, ``If-Range``, ``If-None-Match`` and HEAD
for it exactly as :class:`~sluicegate.http.files.FileResponse` does for a file::

    class Zeros:
        size = 10 * 2**20
        etag = '"zeros-10m"'

        def open(self, offset: int) -> Iterator[bytes]:
            left = self.size - offset
            while left > 0:
                n = min(left, 65536)
                yield bytes(n)
                left -= n

    app = SeekableResponse(Zeros(), media_type="application/octet-stream")

The pieces shared with ``FileResponse`` are here too: :func:`body_plan` (sans-IO: what
to send, in order, for a :class:`~sluicegate.http.ranges.Decision`), :func:`take` (exactly
``n`` bytes of an iterator, or an error) and :func:`content_disposition`.
"""

from __future__ import annotations

import inspect
import logging
import re
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import DEFAULT_LIMIT
from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError, SourceChanged, StreamError
from sluicegate.http.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sluicegate.http.problem import problem_body, send_problem
from sluicegate.http.ranges import (
    DEFAULT_MAX_RANGES,
    Decision,
    Representation,
    evaluate,
    multipart_parts,
)

__all__ = [
    "PlanItem",
    "SeekableResponse",
    "SeekableSource",
    "atake",
    "body_plan",
    "content_disposition",
    "extra_headers",
    "merge_headers",
    "send_decision_without_body",
    "take",
]

logger = logging.getLogger("sluicegate")

PlanItem = bytes | tuple[int, int]
"""One step of a body: framing bytes to send as they are, or a ``(start, stop)`` slice."""


@runtime_checkable
class SeekableSource(Protocol):
    """Content of known size that can be produced from any byte offset.

    Attributes:
        size: Length in bytes, known before any byte is produced.
        etag: A strong entity-tag, quotes included (``'"v1"'``), that changes whenever
            any byte would. Clients resume only while it stays the same.

    Optional attributes, read with ``getattr``: ``last_modified`` (POSIX seconds) and
    ``content_type``.
    """

    size: int
    etag: str

    def open(self, offset: int) -> Iterable[bytes] | AsyncIterable[bytes]:
        """Yield the bytes from ``offset`` on (at least up to the end of the range asked).

        The caller stops iterating when it has what it needs and then closes the
        iterator (``close()`` / ``aclose()``) if it has such a method.
        """
        ...


def body_plan(decision: Decision, rep: Representation) -> list[PlanItem]:
    """What to send for ``decision``, in order: framing bytes and ``(start, stop)`` slices.

    Empty for 304/412/416 and empty representations. Sans-IO, so file, zero-copy and
    generated bodies share one definition of the multipart framing.

    >>> rep = Representation(length=100)
    >>> body_plan(evaluate("GET", {"range": "bytes=10-19"}, rep), rep)
    [(10, 20)]
    """
    if decision.status not in (200, 206):
        return []
    if not decision.is_multipart:
        return list(decision.ranges)
    body = multipart_parts(decision, rep)
    plan: list[PlanItem] = []
    for part in body.parts:
        plan += [part.header, (part.start, part.stop)]
    plan.append(body.closing)
    return plan


def take(iterator: Iterator[bytes], n: int) -> Iterator[bytes]:
    """Yield exactly ``n`` bytes of ``iterator``, the last chunk cut; raise if it runs short.

    A source that ends early would leave the body shorter than the ``Content-Length``
    already sent: raising makes the response abort, which every client detects.

    Raises:
        StreamError: when the iterator ends before ``n`` bytes.
    """
    left = n
    while left > 0:
        piece, left = _cut(next(iterator, None), left)
        if piece:
            yield piece


async def atake(iterator: AsyncIterator[bytes], n: int) -> AsyncIterator[bytes]:
    """The async twin of :func:`take` (the same cutting, :func:`_cut`)."""
    left = n
    while left > 0:
        piece, left = _cut(await anext(iterator, None), left)
        if piece:
            yield piece


def _cut(chunk: bytes | None, left: int) -> tuple[bytes, int]:
    """(what to send of ``chunk``, the bytes still owed after it), ``left`` owed before.

    Sans-IO, the one definition :func:`take` and :func:`atake` share: a chunk that
    reaches past the end is cut there, and the end of the iterator (None) before
    ``left`` reaches 0 is an error.

    >>> _cut(b"abcdef", 4), _cut(b"ab", 4), _cut(b"", 4)
    ((b'abcd', 0), (b'ab', 2), (b'', 4))
    """
    if chunk is None:
        raise SourceChanged(f"the source ended {left} bytes before the end of the range")
    size = len(chunk)
    if size >= left:
        return (chunk if size == left else bytes(memoryview(chunk)[:left])), 0
    return chunk, left - size


_TOKEN_SAFE = re.compile(r"[\x20-\x7e]")


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A ``Content-Disposition`` value with an ASCII fallback and RFC 8187 ``filename*``.

    >>> content_disposition("résumé.pdf")
    'attachment; filename="r_sum_.pdf"; filename*=UTF-8\\'\\'r%C3%A9sum%C3%A9.pdf'
    """
    if disposition not in ("attachment", "inline"):
        raise ConfigError(f"disposition must be 'attachment' or 'inline', not {disposition!r}")
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if not name:
        raise ConfigError(f"filename {filename!r} has no name part")
    fallback = "".join(c if _TOKEN_SAFE.fullmatch(c) and c not in '"%' else "_" for c in name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += "; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return value


async def send_decision_without_body(
    send: Send, decision: Decision, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer 304, 412 and 416 (problem+json bodies for the last two)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers]
    body = b""
    if decision.status == 304:
        headers += extra or []
    else:
        if decision.status == 416:
            title, detail = "Range Not Satisfiable", "no requested range overlaps the content"
        else:
            title, detail = "Precondition Failed", f"precondition failed: {decision.reason}"
        body = problem_body(decision.status, title, detail)
        headers = [h for h in headers if h[0] not in (b"content-type", b"content-length")]
        headers += [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def merge_headers(
    decision: Decision, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The decision's headers (lowercase, for ASGI), then ``extra`` for names it lacks."""
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers]
    have = {k for k, _ in out}
    return out + [(k, v) for k, v in extra if k not in have]


def extra_headers(
    headers: Mapping[str, str] | None, filename: str | None, disposition: str
) -> list[tuple[bytes, bytes]]:
    """User headers plus ``Content-Disposition``, as lowercase ASGI pairs."""
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if filename is not None and not any(k == b"content-disposition" for k, _ in out):
        out.append((b"content-disposition", content_disposition(filename, disposition).encode()))
    return out


class SeekableResponse(Response):
    """Serve a :class:`SeekableSource` with Range, If-Range, conditional requests and HEAD.

    Single ranges are one :meth:`SeekableSource.open` at the range start; several
    ranges are a ``multipart/byteranges`` body with one ``open`` per part. The bytes
    go through :class:`~sluicegate.StreamResponse`, so memory stays within
    ``high_water_mark`` and a source that ends early aborts the response instead of
    sending a body shorter than its ``Content-Length``.

    Args:
        source: The content.
        media_type: ``Content-Type``; else ``source.content_type``, else
            ``application/octet-stream``.
        filename: Adds ``Content-Disposition`` (``disposition``: attachment/inline).
        headers: More response headers.
        max_ranges: More range-specs than this get the whole content (200).
        high_water_mark: Bytes the engine may hold for this response.
    """

    def __init__(
        self,
        source: SeekableSource,
        *,
        media_type: str | None = None,
        filename: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_ranges: int = DEFAULT_MAX_RANGES,
        disposition: str = "attachment",
        background: BackgroundTask | None = None,
        high_water_mark: int = DEFAULT_LIMIT,
    ) -> None:
        self.source = source
        self.media_type = (
            media_type or getattr(source, "content_type", None) or ("application/octet-stream")
        )
        last_modified = getattr(source, "last_modified", None)
        self.representation = Representation(
            length=source.size,
            etag=source.etag,
            last_modified=last_modified,
            content_type=self.media_type,
        )
        self.max_ranges = max_ranges
        self.status_code = 200
        self.background = background
        self.high_water_mark = high_water_mark
        self._extra = extra_headers(headers, filename, disposition)
        self.raw_headers = list(self._extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run as an ASGI application."""
        if scope["type"] != "http":
            raise ConfigError(f"SeekableResponse serves HTTP, not {scope['type']!r}")
        method = scope.get("method", "GET")
        rep = self.representation
        decision = evaluate(method, scope.get("headers", []), rep, max_ranges=self.max_ranges)
        if decision.status not in (200, 206):
            await send_decision_without_body(send, decision, self._extra)
            return
        headers = merge_headers(decision, self._extra)
        plan = body_plan(decision, rep)
        if method == "HEAD" or not plan:
            await send(
                {"type": "http.response.start", "status": decision.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        first = next(item for item in plan if isinstance(item, tuple))
        try:
            opened = self.source.open(first[0])
        except Exception as exc:
            # Nothing is committed yet: the client can still get an honest 500.
            logger.exception("open(%d) failed for %s", first[0], scope.get("path"))
            await send_problem(
                send, 500, "Internal Server Error", "the content could not be opened",
                error=type(exc).__name__,
            )  # fmt: skip
            return
        body: Iterable[bytes] | AsyncIterable[bytes]
        if isinstance(opened, AsyncIterable):
            body = _async_body(self.source, plan, aiter(opened))
        else:
            body = _sync_body(self.source, plan, iter(opened))
        length = int(decision.header("Content-Length") or 0)
        await StreamResponse(
            body,
            status_code=decision.status,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
            background=self.background,
            high_water_mark=self.high_water_mark,
            content_length=length,
        )(scope, receive, send)


# The two bodies below are the thin sync and async layers of one walk of the plan:
# they differ only where they touch the source (iterate, close), so they stay two.


def _sync_body(
    source: SeekableSource, plan: list[PlanItem], first: Iterator[bytes]
) -> Iterator[bytes]:
    pending: Iterator[bytes] | None = first
    try:
        for item in plan:
            if isinstance(item, bytes):
                yield item
                continue
            start, stop = item
            if pending is None:
                opened = source.open(start)
                if isinstance(opened, AsyncIterable):
                    raise StreamError("open() returned an async iterator after a sync one")
                pending = iter(opened)
            try:
                yield from take(pending, stop - start)
            finally:
                _close(pending)
                pending = None
    finally:
        if pending is not None:
            _close(pending)


async def _async_body(
    source: SeekableSource, plan: list[PlanItem], first: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    pending: AsyncIterator[bytes] | None = first
    try:
        for item in plan:
            if isinstance(item, bytes):
                yield item
                continue
            start, stop = item
            if pending is None:
                opened = source.open(start)
                if not isinstance(opened, AsyncIterable):
                    raise StreamError("open() returned a sync iterator after an async one")
                pending = aiter(opened)
            try:
                async for chunk in atake(pending, stop - start):
                    yield chunk
            finally:
                await _aclose(pending)
                pending = None
    finally:
        if pending is not None:
            await _aclose(pending)


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result
