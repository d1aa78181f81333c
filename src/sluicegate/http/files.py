"""Files over HTTP: ``Range``, ``If-Range``, validators, zero-copy where the server offers it.

:class:`FileResponse` is an ASGI application and a Starlette ``Response``::

    @app.get("/download/{name}")
    async def download(name: str):
        return FileResponse(f"/srv/exports/{name}.csv", filename=f"{name}.csv")

Every request is decided by :func:`sluicegate.http.ranges.evaluate` against what ``fstat``
says of the file *as opened*, so the ``ETag`` describes the bytes that are read even
when the path is replaced meanwhile. The body goes out, in order of preference:

1. ``http.response.zerocopysend`` when the server lists it in ``scope["extensions"]``:
   the kernel copies each slice (``offset``/``count``), ranges and multipart included;
2. ``http.response.pathsend`` for a whole file (200), when the server offers that;
3. otherwise ``os.pread`` blocks of at most 256 KiB in a worker thread, through
   :class:`~sluicegate.StreamResponse` (bounded memory, ``Content-Length`` exact).

A file that changes size or mtime while it is being read aborts the response (no
terminating chunk, or a body short of its ``Content-Length``): the client sees an
incomplete transfer, resumes with ``If-Range``, and gets the new file whole. It never
gets a body that silently mixes two versions.

:class:`StaticDirectory` serves a directory tree with the same machinery and refuses
anything outside its root (see :func:`safe_segments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mimetypes
import os
import stat
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import IO

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import DEFAULT_LIMIT
from sluicegate.engine.response import StreamResponse
from sluicegate.engine.sources import MAX_FILE_READ
from sluicegate.errors import ClientDisconnected, ConfigError, SourceChanged, send_errors
from sluicegate.http.integrity import file_digest
from sluicegate.http.problem import send_problem
from sluicegate.http.ranges import DEFAULT_MAX_RANGES, Representation, etag_for, evaluate
from sluicegate.http.seekable import (
    PlanItem,
    body_plan,
    extra_headers,
    merge_headers,
    send_decision_without_body,
)

__all__ = ["FileResponse", "StaticDirectory", "guess_media_type", "safe_segments"]

ZEROCOPY = "http.response.zerocopysend"
PATHSEND = "http.response.pathsend"


def guess_media_type(name: str) -> str:
    """The media type for a file name; text types get ``charset=utf-8``.

    >>> guess_media_type("notes.txt")
    'text/plain; charset=utf-8'
    >>> guess_media_type("blob")
    'application/octet-stream'
    """
    media_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    return media_type


class FileResponse(Response):
    """Serve the regular file at ``path`` with Range support and bounded memory.

    A missing, unreadable or non-regular path (directory, FIFO, device) is a 404
    ``application/problem+json``, never a 500 and never a blocked worker.

    Args:
        path: The file.
        media_type: ``Content-Type``; guessed from ``filename`` or ``path`` when omitted.
        filename: Adds ``Content-Disposition`` with this name (``disposition``:
            ``"attachment"`` or ``"inline"``).
        headers: More response headers.
        max_ranges: More range-specs than this get the whole file (200).
        etag: Use this strong entity-tag instead of one made of size, mtime and inode
            (for content whose identity you know better, e.g. a spooled transfer).
        block_size: Largest ``pread`` when the server has no zero-copy (≤ 256 KiB).
        high_water_mark: Bytes the engine may hold for this response.
        follow_symlinks: When false the last path component may not be a symlink
            (``O_NOFOLLOW``); :class:`StaticDirectory` resolves links itself.
        digest: Send ``Repr-Digest: sha-256=:…:`` of the whole file (computed once per
            path, size and modification time, in a worker thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        media_type: str | None = None,
        filename: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_ranges: int = DEFAULT_MAX_RANGES,
        disposition: str = "attachment",
        etag: str | None = None,
        background: BackgroundTask | None = None,
        block_size: int = MAX_FILE_READ,
        high_water_mark: int = DEFAULT_LIMIT,
        follow_symlinks: bool = True,
        digest: bool = False,
    ) -> None:
        if not 0 < block_size <= MAX_FILE_READ:
            raise ConfigError(f"block_size must be 1..{MAX_FILE_READ}, not {block_size}")
        if max_ranges < 1:
            raise ConfigError(f"max_ranges must be at least 1, not {max_ranges}")
        self.path = os.fspath(path)
        self.media_type: str = media_type or guess_media_type(filename or self.path)
        self.status_code = 200
        self.background = background
        self.max_ranges = max_ranges
        self.etag = etag
        self.block_size = block_size
        self.high_water_mark = high_water_mark
        self.follow_symlinks = follow_symlinks
        self.digest = digest
        self._extra = extra_headers(headers, filename, disposition)
        self.raw_headers = list(self._extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run as an ASGI application."""
        if scope["type"] != "http":
            raise ConfigError(f"FileResponse serves HTTP, not {scope['type']!r}")
        file = await asyncio.to_thread(_open_regular, self.path, self.follow_symlinks)
        if file is None:
            await send_problem(send, 404, "Not Found", "no such file")
            return
        try:
            await self._serve(file, scope, receive, send)
        finally:
            file.close()
        if self.background is not None:
            await self.background()

    async def _serve(self, file: IO[bytes], scope: Scope, receive: Receive, send: Send) -> None:
        st = os.fstat(file.fileno())
        rep = Representation(
            length=st.st_size,
            etag=self.etag or etag_for(st.st_size, st.st_mtime_ns, st.st_ino),
            last_modified=st.st_mtime,
            content_type=self.media_type,
        )
        method = scope.get("method", "GET")
        decision = evaluate(method, scope.get("headers", []), rep, max_ranges=self.max_ranges)
        if decision.status not in (200, 206):
            await send_decision_without_body(send, decision, self._extra)
            return
        headers = merge_headers(decision, self._extra)
        if self.digest:
            # The whole file's digest, for 206 too (RFC 9530 Repr-Digest); hashed once
            # per path, size and mtime, in a thread.
            value = await asyncio.to_thread(file_digest, self.path)
            headers = [*headers, (b"repr-digest", value.encode())]
        plan = body_plan(decision, rep)
        start = {"type": "http.response.start", "status": decision.status, "headers": headers}
        if method == "HEAD" or not plan:
            await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        extensions = scope.get("extensions") or {}
        if ZEROCOPY in extensions:
            with contextlib.suppress(ClientDisconnected):
                await _zerocopy(file, plan, start, st, send)
        elif PATHSEND in extensions and decision.status == 200:
            await send(start)
            await send({"type": PATHSEND, "path": _path_of(file, self.path)})
        else:
            await StreamResponse(
                _read_blocks(file.fileno(), plan, st, self.block_size),
                status_code=decision.status,
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
                high_water_mark=self.high_water_mark,
                content_length=int(decision.header("Content-Length") or 0),
            )(scope, receive, send)


def _open_regular(path: str, follow_symlinks: bool) -> IO[bytes] | None:
    """Open ``path`` for reading if it is a regular file, without blocking on FIFOs."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP, errno.EISDIR):
            return None
        if exc.errno in (errno.ENXIO, errno.ENAMETOOLONG, errno.EINVAL, errno.EPERM):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


# The server opens a pathsend path itself; through /proc it opens the very file we
# stat-ed, even if the name was replaced since.
_PROC_FD = os.path.isdir("/proc/self/fd")


def _path_of(file: IO[bytes], path: str) -> str:
    return f"/proc/self/fd/{file.fileno()}" if _PROC_FD else os.path.abspath(path)


def _changed(fd: int, st: os.stat_result) -> bool:
    now = os.fstat(fd)
    return now.st_size != st.st_size or now.st_mtime_ns != st.st_mtime_ns


def _read_blocks(fd: int, plan: list[PlanItem], st: os.stat_result, block: int) -> Iterator[bytes]:
    """The body of ``plan``, read with ``pread``; raises if the file changes underneath."""
    for item in plan:
        if isinstance(item, bytes):
            yield item
            continue
        pos, stop = item
        while pos < stop:
            data = os.pread(fd, min(block, stop - pos), pos)
            # Checked after the read: a write that raced with it has changed the mtime
            # by now, so no block of a half-rewritten file is ever sent.
            if not data or _changed(fd, st):
                raise SourceChanged(f"the file changed while being served (at byte {pos})")
            yield data
            pos += len(data)


async def _zerocopy(
    file: IO[bytes], plan: list[PlanItem], start: dict[str, object], st: os.stat_result, send: Send
) -> None:
    # ASGI 2.4: send() raises OSError once the client is gone.
    with send_errors:
        await send(start)
        last = len(plan) - 1
        for i, item in enumerate(plan):
            more = i < last
            if isinstance(item, bytes):
                await send({"type": "http.response.body", "body": item, "more_body": more})
            else:
                offset, stop = item
                await send(
                    {
                        "type": ZEROCOPY,
                        "file": file,
                        "offset": offset,
                        "count": stop - offset,
                        "more_body": more,
                    }
                )
            if await asyncio.to_thread(_changed, file.fileno(), st):
                raise SourceChanged("the file changed while being served")


# -- static directories -----------------------------------------------------------


def safe_segments(path: str, *, dotfiles: bool = False) -> tuple[str, ...] | None:
    """The path segments of a URL path that may be looked up under a root, or ``None``.

    ``path`` is the ASGI ``scope["path"]`` (already percent-decoded once). Refused:
    NUL bytes, backslashes, empty segments (so ``//etc/passwd`` cannot become
    absolute), ``.`` and ``..`` (also when a second decoding would make them, so a
    double-encoded ``%252e%252e`` is refused too), segments starting with a dot
    unless ``dotfiles``, and the root itself. Sans-IO: symlinks are checked by
    :meth:`StaticDirectory.resolve`.

    >>> safe_segments("/docs/a.txt")
    ('docs', 'a.txt')
    >>> safe_segments("/docs/../../etc/passwd") is None
    True
    """
    if not path.startswith("/") or "\x00" in path or "\\" in path:
        return None
    parts = path[1:].split("/")
    for part in parts:
        twice = urllib.parse.unquote(part)
        if not part or part in (".", "..") or twice in (".", ".."):
            return None
        if any(c in twice for c in "/\\\x00"):
            return None
        if not dotfiles and (part.startswith(".") or twice.startswith(".")):
            return None
    return tuple(parts)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette's rule for ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class StaticDirectory:
    """An ASGI app serving the regular files under ``root``, and nothing else.

    Any path that leaves the root (``..``, encoded ``%2e%2e``, absolute paths, NUL
    bytes, symlinks whose target is outside the root), names a directory (no
    listings) or a non-regular file is a 404 problem+json; methods other than GET and
    HEAD are 405. Files are served by :class:`FileResponse` (Range, If-Range,
    validators, zero-copy).

    Example, in Starlette::

        app = Starlette(routes=[Mount("/static", app=StaticDirectory("public"))])

    Symlinks inside the root that point inside it are followed. The check resolves
    the path and then opens the result with ``O_NOFOLLOW``; it assumes that nobody
    who could write to the tree is hostile (then no path check is enough).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        dotfiles: bool = False,
        headers: Mapping[str, str] | None = None,
        max_ranges: int = DEFAULT_MAX_RANGES,
    ) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise ConfigError(f"static root {os.fspath(root)!r} is not a directory")
        self.dotfiles = dotfiles
        self.headers = dict(headers or {})
        self.max_ranges = max_ranges

    def resolve(self, path: str) -> str | None:
        """The real path of the file ``path`` names under the root, or ``None``."""
        segments = safe_segments(path, dotfiles=self.dotfiles)
        if segments is None:
            return None
        real = os.path.realpath(os.path.join(self.root, *segments))
        if real == self.root or os.path.commonpath([self.root, real]) != self.root:
            return None
        return real

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run as an ASGI application."""
        if scope["type"] != "http":
            raise ConfigError(f"StaticDirectory serves HTTP, not {scope['type']!r}")
        if scope.get("method") not in ("GET", "HEAD"):
            body = b'{"type":"about:blank","title":"Method Not Allowed","status":405}'
            headers = [
                (b"allow", b"GET, HEAD"),
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        real = await asyncio.to_thread(self.resolve, _route_path(scope))
        if real is None:
            await send_problem(send, 404, "Not Found", "no such file")
            return
        response = FileResponse(
            real, headers=self.headers, max_ranges=self.max_ranges, follow_symlinks=False
        )
        await response(scope, receive, send)
