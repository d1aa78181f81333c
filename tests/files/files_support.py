"""Helpers for the files/ZIP/spool tests: an in-process ASGI call, a cutting wrapper."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from typing import Any

from sluicegate.http.seekable import SeekableSource


async def call(
    app: Any,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> tuple[int, dict[str, str], bytes, list[dict[str, Any]]]:
    """Run ``app`` once in process; (status, headers, body bytes, all messages).

    Zero-copy messages are "sent" by reading the slice they name from their file.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    if extensions is not None:
        scope["extensions"] = extensions
    messages: list[dict[str, Any]] = []
    body = bytearray()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # never disconnects
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
        elif message["type"] == "http.response.zerocopysend":
            f = message["file"]
            count = message.get("count")
            data = os.pread(f.fileno(), count, message.get("offset", 0))
            body.extend(data)
        elif message["type"] == "http.response.pathsend":
            fd = os.open(message["path"], os.O_RDONLY)
            try:
                body.extend(os.read(fd, 1 << 30))
            finally:
                os.close(fd)

    await app(scope, receive, send)
    start = messages[0]
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], hdrs, bytes(body), messages


class Cut(OSError):
    """Raised by the cutting send: the engine takes it for a client that left."""


class CutOnce:
    """Wrap an ASGI app: the first GET whose body reaches ``cut_at`` bytes is cut there.

    The wrapper sends the first ``cut_at`` body bytes, then makes ``send`` fail (the
    app sees a client that left) and raises, so uvicorn drops the connection without
    finishing the response: a real broken download, made by the server.
    """

    def __init__(self, app: Any, cut_at: int, path_prefix: str = "/") -> None:
        self.app = app
        self.cut_at = cut_at
        self.path_prefix = path_prefix
        self.cut = False
        self.fired = False
        #: (method, path, Range header or None) of every request, in order.
        self.requests: list[tuple[str, str, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ranges = [v.decode() for k, v in scope["headers"] if k == b"range"]
            self.requests.append((scope["method"], scope["path"], ranges[0] if ranges else None))
        if (
            scope["type"] != "http"
            or self.cut
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.path_prefix)
        ):
            await self.app(scope, receive, send)
            return
        self.cut = True
        sent = 0

        async def cutting_send(message: dict[str, Any]) -> None:
            nonlocal sent
            if self.fired:
                raise Cut("already cut")  # nothing more reaches the client
            if message["type"] == "http.response.body":
                body = bytes(message.get("body", b""))
                if sent + len(body) >= self.cut_at:
                    piece = body[: self.cut_at - sent]
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    self.fired = True
                    raise Cut("cut by the test")
                sent += len(body)
            await send(message)

        with contextlib.suppress(Cut):
            await self.app(scope, receive, cutting_send)
        raise RuntimeError("connection cut by the test")


class BytesSeekable:
    """A seekable source over bytes; ``chunk`` sets the size of what open() yields."""

    def __init__(self, data: bytes, etag: str = '"bytes-v1"', chunk: int = 1000) -> None:
        self.data = data
        self.size = len(data)
        self.etag = etag
        self.chunk = chunk
        self.opened: list[int] = []

    def open(self, offset: int):  # type: ignore[no-untyped-def]
        self.opened.append(offset)
        for i in range(offset, self.size, self.chunk):
            yield self.data[i : i + self.chunk]


class AsyncBytesSeekable(BytesSeekable):
    async def open(self, offset: int):  # type: ignore[no-untyped-def,override]
        self.opened.append(offset)
        for i in range(offset, self.size, self.chunk):
            yield self.data[i : i + self.chunk]


class RangeFile(io.RawIOBase):
    """A read-only seekable file over a SeekableSource (for zipfile on huge archives)."""

    def __init__(self, source: SeekableSource) -> None:
        self.source = source
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.source.size}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.source.size - self.pos)
        if want <= 0:
            return 0
        out = bytearray()
        it = iter(self.source.open(self.pos))  # type: ignore[call-overload]
        try:
            for chunk in it:
                out += chunk[: want - len(out)]
                if len(out) >= want:
                    break
        finally:
            it.close()
        buffer[: len(out)] = out
        self.pos += len(out)
        return len(out)
