"""A bounded disk spool that makes a source which cannot pause or repeat resumable.

A live feed, or an upstream that can be read only once, cannot be asked again for the
bytes a broken download lost. :class:`Spool` puts a file between them: a writer task
drains the source into ``<directory>/<pid>-<id>.spool`` at the source's own pace, and
every client (the first one and any resume) reads that file, waiting for bytes that
are not written yet. The source never waits for a slow client, memory stays bounded
(the disk takes the difference), and a client whose connection broke asks again::

    spool = Spool("/var/cache/myapp/spool", ttl=600)

    async def feed(request):
        return spool.stream(upstream_chunks(), media_type="video/mp2t")

    app = Starlette(routes=[Route("/feed", feed), Mount("/spool", app=spool)])

The first response carries ``Transfer-Id``, ``Content-Location: /spool/<id>`` (the URL
whose representation these bytes are) and a strong ``ETag``; ``GET /spool/<id>`` with
``Range`` and ``If-Range`` resumes. The writer keeps draining the source after the
first client left, so the resume can go past the point where the connection broke.

Limits and what happens at them:

* ``max_transfer_bytes`` per transfer, ``max_total_bytes`` for the directory. A
  transfer that would pass either stops spooling there: it becomes *truncated* at
  ``N`` bytes. A first client still connected then gets the rest straight from the
  source (through a small bounded queue, so the source now waits for that client);
  resuming past ``N`` is not offered: ``/spool/<id>`` answers 416 with
  ``Content-Range: bytes */N`` (410 without Range). With no client connected the
  source is closed at that point. When the total is already spent, new responses are
  streamed without a spool and without ``Transfer-Id`` (no resume is offered).
* ``ttl`` seconds after a transfer ends (or after its first client left, for a
  source that never ends) its file is removed and ``/spool/<id>`` is 404. Files left
  by a process that no longer runs are removed when a ``Spool`` opens the directory.
* Nothing half-written is served: a resume of a finished transfer is a plain file
  response; of a transfer still spooling with a declared ``size``, the parts past
  what is written wait for it (at most ``wait_timeout`` per stall, then the response
  aborts); without a declared size, the request waits up to ``wait_timeout`` for the
  end (then 503 with ``Retry-After``), because a length is needed to answer a range.

One ``Spool`` per directory per process: transfers live in the memory of the process
that started them, so with several workers route ``/spool/`` to the same process
(sticky sessions) or give each worker its own directory and path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import DEFAULT_LIMIT
from sluicegate.engine.response import StreamResponse
from sluicegate.engine.sources import MAX_FILE_READ
from sluicegate.errors import ConfigError, StreamError
from sluicegate.http.files import FileResponse, guess_media_type
from sluicegate.http.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sluicegate.http.problem import problem_body, send_problem
from sluicegate.http.seekable import SeekableResponse, content_disposition

__all__ = ["Spool", "SpoolState", "SpooledResponse", "TransferStatus"]

logger = logging.getLogger("sluicegate")

#: How a spooled transfer stands, in the words of :class:`sluicegate.interfaces.TransferState`
#: (``streaming``, ``completed``, ``failed``) plus the spool's own ``truncated``: it
#: stopped at a spool limit, so only the part before it can be resumed.
SpoolState = Literal["streaming", "completed", "truncated", "failed"]
_NAME_RE = re.compile(r"(\d+)-([A-Za-z0-9_-]{16})\.spool")
_LIVE_QUEUE = 8  # chunks held for a first client once spooling has stopped


@dataclass(frozen=True)
class TransferStatus:
    """A snapshot of one spooled transfer (see :meth:`Spool.status`)."""

    transfer_id: str
    state: SpoolState
    spooled: int
    size: int | None
    resume_url: str


@dataclass(eq=False)
class _Transfer:
    id: str
    path: str
    media_type: str
    filename: str | None
    size: int | None
    resume_url: str
    state: SpoolState = "streaming"
    spooled: int = 0
    #: Bytes of this transfer counted in ``Spool.total``: those spooled, plus a write
    #: in flight (reserved before it starts, so that concurrent writers cannot all pass
    #: the limit check and then all write), plus one whose outcome is unknown.
    held: int = 0
    live_attached: bool = True
    error: BaseException | None = None
    ended_at: float | None = None
    detached_at: float | None = None
    writer: asyncio.Task[None] | None = None
    live: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(_LIVE_QUEUE))
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def etag(self) -> str:
        # The bytes under one id never change (the spool only appends, never rewrites),
        # so a strong tag derived from the id alone is correct.
        return f'"spool-{self.id}"'

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def changed(self, within: float) -> bool:
        """Wait for new bytes or a new state; False after ``within`` seconds without."""
        try:
            await asyncio.wait_for(self._event.wait(), within)
        except TimeoutError:
            return False
        return True

    def detach(self) -> None:
        self.live_attached = False
        self.detached_at = time.monotonic()
        # Unblock a writer waiting for room in the live queue; it sees the flag next.
        while not self.live.empty():
            self.live.get_nowait()


class Spool:
    """Spool non-repeatable sources to disk so their downloads can be resumed by Range.

    Also the ASGI app that serves ``GET``/``HEAD`` ``<prefix>/<id>`` (mount it at
    ``prefix``, or route the full path to it).

    Args:
        directory: Where spool files live; created if missing. Files named
            ``<pid>-<id>.spool`` whose process no longer runs are removed now.
        max_transfer_bytes: Largest spool of one transfer.
        max_total_bytes: Largest sum of all spools in this directory.
        ttl: Seconds a transfer stays resumable after it ended.
        wait_timeout: Seconds a resume waits for bytes not spooled yet.
        prefix: URL path the resume route is mounted at (for ``Content-Location``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_transfer_bytes: int = 1 << 30,
        max_total_bytes: int = 8 << 30,
        ttl: float = 3600.0,
        wait_timeout: float = 30.0,
        prefix: str = "/spool",
    ) -> None:
        if max_transfer_bytes < 1 or max_total_bytes < 1:
            raise ConfigError("spool limits must be positive")
        if ttl <= 0 or wait_timeout <= 0:
            raise ConfigError("ttl and wait_timeout must be positive")
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.max_transfer_bytes = max_transfer_bytes
        self.max_total_bytes = max_total_bytes
        self.ttl = ttl
        self.wait_timeout = wait_timeout
        self.prefix = prefix.rstrip("/")
        self.total = 0
        self._transfers: dict[str, _Transfer] = {}
        self.removed_orphans = self._remove_orphans()

    def _remove_orphans(self) -> int:
        removed = 0
        for name in os.listdir(self.directory):
            m = _NAME_RE.fullmatch(name)
            if m is None:
                continue  # not ours: never delete what we did not write
            pid = int(m.group(1))
            if pid != os.getpid() and _alive(pid):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))
                removed += 1
        return removed

    def stream(
        self,
        content: AsyncIterable[Any] | Iterable[Any],
        *,
        media_type: str | None = None,
        filename: str | None = None,
        headers: Mapping[str, str] | None = None,
        size: int | None = None,
        background: BackgroundTask | None = None,
    ) -> SpooledResponse:
        """A response that spools ``content`` while it streams it (see the module doc).

        Args:
            content: Async or sync iterable of ``bytes`` (a sync one is pulled in a
                worker thread, one chunk per hop). A :class:`~sluicegate.Channel` works.
            size: The total length when the source declares one (an upstream's
                ``Content-Length``): sent as ``Content-Length``, and resumes can then
                be answered before the transfer ends. A source that yields another
                length fails the transfer.
        """
        return SpooledResponse(
            self,
            content,
            media_type=media_type or (guess_media_type(filename) if filename else None),
            filename=filename,
            headers=headers,
            size=size,
            background=background,
        )

    def status(self, transfer_id: str) -> TransferStatus | None:
        """The state of a transfer, or ``None`` if it is unknown or expired."""
        t = self._transfers.get(transfer_id)
        if t is None:
            return None
        return TransferStatus(t.id, t.state, t.spooled, t.size, t.resume_url)

    def transfers(self) -> list[TransferStatus]:
        """Every transfer this spool still holds, oldest first."""
        return [s for s in map(self.status, list(self._transfers)) if s is not None]

    def sweep(self, now: float | None = None) -> int:
        """Remove expired transfers and stop writers detached for longer than ``ttl``."""
        now = time.monotonic() if now is None else now
        removed = 0
        for t in list(self._transfers.values()):
            if t.ended_at is not None and now - t.ended_at >= self.ttl:
                self._forget(t)
                removed += 1
            elif (
                t.ended_at is None
                and not t.live_attached
                and t.detached_at is not None
                and now - t.detached_at >= self.ttl
                and t.writer is not None
            ):
                t.writer.cancel()  # a feed that never ends is not kept forever
        return removed

    def _forget(self, t: _Transfer) -> None:
        self._transfers.pop(t.id, None)
        self.total -= t.held
        t.held = 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(t.path)

    async def aclose(self) -> None:
        """Stop every writer and remove every spool file of this spool."""
        writers = [t.writer for t in self._transfers.values() if t.writer is not None]
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for t in list(self._transfers.values()):
            self._forget(t)

    # -- writing ---------------------------------------------------------------

    def _begin(self, media_type: str, filename: str | None, size: int | None) -> _Transfer | None:
        self.sweep()
        if self.total >= self.max_total_bytes:
            return None
        tid = secrets.token_urlsafe(12)
        t = _Transfer(
            id=tid,
            path=os.path.join(self.directory, f"{os.getpid()}-{tid}.spool"),
            media_type=media_type,
            filename=filename,
            size=size,
            resume_url=f"{self.prefix}/{tid}",
        )
        # Create the file before any reader can look for it.
        os.close(os.open(t.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        self._transfers[tid] = t
        return t

    async def _write(self, t: _Transfer, content: AsyncIterable[Any] | Iterable[Any]) -> None:
        fd = await asyncio.to_thread(os.open, t.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        chunks = _aiter(content)
        try:
            async for chunk in chunks:
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                if not data:
                    continue
                if t.state == "streaming":
                    n = len(data)
                    if self._reserve(t, n):
                        await self._append(t, fd, data)
                        continue
                    t.state = "truncated"
                    t.notify()
                    logger.warning("spool %s truncated at %d bytes (limit)", t.id, t.spooled)
                if not t.live_attached:
                    break
                await t.live.put(data)  # the source now waits for the first client
                t.notify()
            else:
                if t.state == "streaming":
                    if t.size is not None and t.spooled != t.size:
                        t.error = StreamError(f"source gave {t.spooled} bytes, not {t.size}")
                        t.state = "failed"
                    else:
                        t.state = "completed"
        except asyncio.CancelledError:
            if t.state == "streaming":
                t.state = "truncated"
        except Exception as exc:
            logger.warning("spool %s: the source failed: %r", t.id, exc)
            t.error = exc
            t.state = "failed"
        finally:
            os.close(fd)
            with contextlib.suppress(Exception):
                await _aclose(chunks)
            t.ended_at = time.monotonic()
            t.notify()

    def _reserve(self, t: _Transfer, n: int) -> bool:
        """Count ``n`` bytes against both limits before writing them; False if over.

        Checking and counting happen with no ``await`` between them, so the limit
        holds however many writers run at once.
        """
        if t.spooled + n > self.max_transfer_bytes or self.total + n > self.max_total_bytes:
            return False
        self.total += n
        t.held += n
        return True

    async def _append(self, t: _Transfer, fd: int, data: bytes) -> None:
        """Write reserved bytes; on failure cut the file back and release the reservation."""
        n = len(data)
        try:
            await asyncio.to_thread(_write_all, fd, data)
        except asyncio.CancelledError:
            # The thread may still write: the reservation stays (released when the
            # transfer is forgotten), so the disk never holds more than is counted.
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, t.spooled)
            self.total -= n
            t.held -= n
            raise
        t.spooled += n
        t.notify()

    # -- reading ---------------------------------------------------------------

    async def _follow(
        self, t: _Transfer, start: int, stop: int | None, *, stall_timeout: float | None
    ) -> AsyncIterator[bytes]:
        """Bytes ``[start, stop)`` of the spool file, waiting for the writer; raise if cut.

        ``stop=None`` follows to the end of the spool. Waiting for the writer longer
        than ``stall_timeout`` (``None``: forever) raises, which aborts the response.
        """
        fd = await asyncio.to_thread(os.open, t.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pos = start
            while stop is None or pos < stop:
                available = t.spooled if stop is None else min(t.spooled, stop)
                if pos < available:
                    n = min(MAX_FILE_READ, available - pos)
                    data = await asyncio.to_thread(os.pread, fd, n, pos)
                    if not data:
                        raise StreamError(f"spool {t.id} is shorter than recorded")
                    yield data
                    pos += len(data)
                elif t.state == "streaming":
                    changed = await t.changed(stall_timeout or self.wait_timeout)
                    if not changed and stall_timeout is not None:
                        raise StreamError(f"spool {t.id} stalled at {t.spooled} bytes")
                else:
                    break
            if stop is not None and pos < stop:
                raise StreamError(f"spool {t.id} ended at {pos} of {stop} bytes ({t.state})")
        finally:
            os.close(fd)

    async def _live(self, t: _Transfer) -> AsyncIterator[bytes]:
        """The first client's body: the spool from 0, then (if truncated) the live queue."""
        sent = 0

        def checked(data: bytes) -> bytes:
            nonlocal sent
            sent += len(data)
            if t.size is not None and sent > t.size:
                raise StreamError(f"the source of spool {t.id} passed its size {t.size}")
            return data

        try:
            # The first client follows the source at the source's pace: no stall timeout.
            async for data in self._follow(t, 0, None, stall_timeout=None):
                yield checked(data)
            if t.state == "truncated":
                while True:
                    try:
                        data = t.live.get_nowait()
                    except asyncio.QueueEmpty:
                        if t.ended_at is not None:
                            break
                        await t.changed(self.wait_timeout)
                        continue
                    yield checked(data)
            if t.state == "failed":
                raise StreamError(f"the source of spool {t.id} failed") from t.error
            if t.size is not None and sent != t.size:
                raise StreamError(f"the source of spool {t.id} ended at {sent} of {t.size}")
        finally:
            t.detach()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``GET``/``HEAD`` ``<prefix>/<id>``: resume a spooled transfer."""
        if scope["type"] != "http":
            raise ConfigError(f"Spool serves HTTP, not {scope['type']!r}")
        if scope.get("method") not in ("GET", "HEAD"):
            await _problem(
                send, 405, "Method Not Allowed", "use GET or HEAD", [(b"allow", b"GET, HEAD")]
            )
            return
        self.sweep()
        tid = _route_path(scope, self.prefix)
        t = self._transfers.get(tid) if tid is not None else None
        if t is None:
            await send_problem(send, 404, "Not Found", "no such transfer, or it has expired")
            return
        if t.state == "streaming" and t.size is None:
            deadline = time.monotonic() + self.wait_timeout
            while t.state == "streaming" and (left := deadline - time.monotonic()) > 0:
                await t.changed(left)
        extra: dict[str, str] = {"Transfer-Id": t.id}
        if t.filename is not None:
            extra["Content-Disposition"] = content_disposition(t.filename)
        if t.state == "completed":
            app: Any = FileResponse(t.path, media_type=t.media_type, headers=extra, etag=t.etag)
        elif t.state == "streaming" and t.size is not None:
            app = SeekableResponse(_Following(self, t), media_type=t.media_type, headers=extra)
        elif t.state == "streaming":
            await _problem(
                send, 503, "Service Unavailable",
                f"transfer {t.id} is still being spooled ({t.spooled} bytes so far)",
                [(b"retry-after", b"5")],
            )  # fmt: skip
            return
        else:
            await self._refuse_incomplete(t, scope, send)
            return
        await app(scope, receive, send)

    async def _refuse_incomplete(self, t: _Transfer, scope: Scope, send: Send) -> None:
        why = "a spool limit" if t.state == "truncated" else "a failure of its source"
        detail = (
            f"transfer {t.id} was spooled only up to byte {t.spooled} because of {why}: "
            "resuming is not offered past that point"
        )
        wants_range = any(k.lower() == b"range" for k, _ in scope.get("headers", []))
        if wants_range:
            await _problem(
                send, 416, "Range Not Satisfiable", detail,
                [(b"content-range", f"bytes */{t.spooled}".encode())],
            )  # fmt: skip
        else:
            await _problem(send, 410, "Gone", detail, [])


class _Following:
    """A transfer with a declared size, seen as a seekable source while it spools."""

    def __init__(self, spool: Spool, t: _Transfer) -> None:
        assert t.size is not None
        self.size = t.size
        self.etag = t.etag
        self._spool = spool
        self._t = t

    def open(self, offset: int) -> AsyncIterator[bytes]:
        spool = self._spool
        return spool._follow(self._t, offset, self.size, stall_timeout=spool.wait_timeout)


class SpooledResponse(Response):
    """The first response of a spooled transfer (made by :meth:`Spool.stream`).

    Headers: ``Transfer-Id``, ``Content-Location`` (the resume URL), ``ETag``,
    ``Content-Type``, ``Content-Length`` when ``size`` was declared, and
    ``Content-Disposition`` for a ``filename``. After it ran, :attr:`transfer_id` is
    the id (``None`` when the total limit was spent and nothing was spooled).
    """

    def __init__(
        self,
        spool: Spool,
        content: AsyncIterable[Any] | Iterable[Any],
        *,
        media_type: str | None = None,
        filename: str | None = None,
        headers: Mapping[str, str] | None = None,
        size: int | None = None,
        background: BackgroundTask | None = None,
        high_water_mark: int = DEFAULT_LIMIT,
    ) -> None:
        if size is not None and size < 0:
            raise ConfigError(f"size must be >= 0, not {size}")
        self.spool = spool
        self.content = content
        self.media_type: str = media_type or "application/octet-stream"
        self.filename = filename
        self.size = size
        self.status_code = 200
        self.background = background
        self.high_water_mark = high_water_mark
        self.user_headers = dict(headers or {})
        self.raw_headers = [(k.lower().encode(), v.encode()) for k, v in self.user_headers.items()]
        self.transfer_id: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the writer and stream the spool to this client."""
        headers = dict(self.user_headers)
        if self.filename is not None:
            headers.setdefault("Content-Disposition", content_disposition(self.filename))
        if scope.get("method") == "HEAD":
            # Nothing to spool for a HEAD: the source is not started.
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            raw.append((b"content-type", self.media_type.encode("latin-1")))
            if self.size is not None:
                raw.append((b"content-length", str(self.size).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # In the loop, not a thread: _begin sweeps (cancelling tasks) and registers the
        # transfer; its only I/O is creating an empty file.
        t = self.spool._begin(self.media_type, self.filename, self.size)
        if t is None:
            logger.warning("spool total limit reached: streaming without a spool")
            body: Any = self.content
        else:
            self.transfer_id = t.id
            headers.update({"Transfer-Id": t.id, "Content-Location": t.resume_url, "ETag": t.etag})
            t.writer = asyncio.create_task(self.spool._write(t, self.content), name=f"spool-{t.id}")
            body = self.spool._live(t)
        await StreamResponse(
            body,
            headers=headers,
            media_type=self.media_type,
            background=self.background,
            high_water_mark=self.high_water_mark,
            content_length=self.size,
        )(scope, receive, send)


def _route_path(scope: Scope, prefix: str) -> str | None:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    tid = path[1:] if path.startswith("/") else None
    return tid if tid and re.fullmatch(r"[A-Za-z0-9_-]{16}", tid) else None


async def _problem(
    send: Send, status: int, title: str, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = problem_body(status, title, detail)
    head = [
        *headers,
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _aiter(content: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(content, AsyncIterable):
        source = aiter(content)
        try:
            async for chunk in source:
                yield chunk
        finally:
            await _aclose(source)  # async for does not close what it iterates
        return
    it: Iterator[Any] = iter(content)
    end = object()
    try:
        while (chunk := await asyncio.to_thread(next, it, end)) is not end:
            yield chunk
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()
