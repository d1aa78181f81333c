"""Test servers for the client tests: uvicorn apps with counters, a raw chunked server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def sha256_field(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1:0 in a thread; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class StreamApp:
    """Streams ``size`` bytes in ``chunk``-sized sends, counting what send() accepted.

    ``produced`` only rises when uvicorn's send() returns, so it stops when the
    client's TCP window is closed: the server-side view of backpressure.
    """

    size: int
    chunk: int = 16 * 1024
    produced: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(self.size).encode())],
            }
        )
        block = b"x" * self.chunk
        left = self.size
        gone = asyncio.Event()

        async def listen() -> None:
            # uvicorn's send() returns quietly after a disconnect: watch receive()
            # so an endless body stops when its client leaves.
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        listener = asyncio.create_task(listen())
        try:
            while left > 0 and not gone.is_set():
                piece = block[: min(self.chunk, left)]
                left -= len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
                self.produced += len(piece)
        finally:
            listener.cancel()


@dataclass
class FileApp:
    """Serves ``data`` at any path with ETag, Range/If-Range, digests and optional cuts.

    * ``cut_at``: the next response stops after that many bytes of the file and
      the connection is dropped (then ``cut_at`` resets to ``None``).
    * ``digest``: ``"repr"`` sends ``Repr-Digest``, ``"wrong"`` a digest of other
      bytes, ``None`` none.
    * ``ledger``: add ``Transfer-Id`` + ``Link`` and serve ``/transfers/<id>``.
    """

    data: bytes
    etag: str = '"v1"'
    cut_at: int | None = None
    digest: str | None = "repr"
    ledger: bool = False
    ledger_digest: str | None = None
    chunk: int = 8192
    requests: list[dict[str, str]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        if path.startswith("/transfers/"):
            await self._ledger(scope, receive, send, path)
            return
        self.requests.append(headers)
        start, status = 0, 200
        rng = headers.get("range", "")
        if rng.startswith("bytes=") and headers.get("if-range", self.etag) == self.etag:
            first = int(rng[6:].split("-")[0])
            if first >= len(self.data):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 416,
                        "headers": [(b"content-range", f"bytes */{len(self.data)}".encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            start, status = first, 206
        out = [
            (b"content-length", str(len(self.data) - start).encode()),
            (b"etag", self.etag.encode()),
        ]
        if status == 206:
            out.append(
                (b"content-range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}".encode())
            )
        if self.digest == "repr":
            out.append((b"repr-digest", sha256_field(self.data).encode()))
        elif self.digest == "wrong":
            out.append((b"repr-digest", sha256_field(b"other bytes").encode()))
        if self.ledger:
            out.append((b"transfer-id", b"t1"))
            out.append((b"link", b'</transfers/t1>; rel="transfer-status"'))
        await send({"type": "http.response.start", "status": status, "headers": out})
        end = len(self.data)
        cut, self.cut_at = self.cut_at, None
        pos = start
        while pos < end:
            if cut is not None and pos >= cut:
                raise ConnectionAbortedError("test server cuts the connection")
            stop = min(end, pos + self.chunk, cut if cut is not None and cut > pos else end)
            await send(
                {"type": "http.response.body", "body": self.data[pos:stop], "more_body": True}
            )
            pos = stop
        await send({"type": "http.response.body", "body": b""})

    async def _ledger(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        import json

        digest = self.ledger_digest or sha256_field(self.data)
        if scope["method"] == "POST" and path.endswith("/receipt"):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            receipt = json.loads(body)
            self.receipts.append(receipt)
            answer = {"verified": receipt["digest"] == digest}
        else:
            answer = {
                "state": "completed",
                "bytes_sent": len(self.data),
                "size": len(self.data),
                "digest": digest,
            }
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@dataclass
class RawChunked:
    """A tiny asyncio HTTP/1.1 server that writes a chunked body with a trailer."""

    body: bytes
    trailer: str
    cut: bool = False
