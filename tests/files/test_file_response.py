"""FileResponse and SeekableResponse in process: statuses, bodies, zero-copy messages."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from files_support import AsyncBytesSeekable, BytesSeekable, call

from sluicegate.errors import StreamError
from sluicegate.http.files import FileResponse
from sluicegate.http.ranges import Representation, etag_for, evaluate, format_http_date, iter_body
from sluicegate.http.seekable import SeekableResponse, content_disposition

DATA = random.Random(3).randbytes(700_000)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


def _expected(headers: dict[str, str], request: dict[str, str], etag: str) -> bytes:
    """The exact body ranges.iter_body gives for this request (boundary taken from the reply)."""
    boundary = None
    if headers["content-type"].startswith("multipart/byteranges"):
        boundary = headers["content-type"].split("boundary=")[1]
    rep = Representation(len(DATA), etag, content_type="application/octet-stream")
    decision = evaluate("GET", request, rep, boundary=boundary)
    return b"".join(iter_body(decision, rep, DATA))


ZEROCOPY = {"http.response.zerocopysend": {}}
PATHSEND = {"http.response.pathsend": {}}


@pytest.mark.parametrize("extensions", [None, ZEROCOPY, PATHSEND], ids=["pread", "zc", "path"])
@pytest.mark.parametrize(
    ("request_headers", "status"),
    [
        ({}, 200),
        ({"range": "bytes=0-0"}, 206),
        ({"range": "bytes=-1000"}, 206),
        ({"range": "bytes=300000-"}, 206),
        ({"range": "bytes=0-99,500000-500099,699990-"}, 206),
        ({"range": "bytes=5-2"}, 200),
    ],
)
async def test_file_bodies(
    data_file: Path, extensions: Any, request_headers: dict[str, str], status: int
) -> None:
    app = FileResponse(data_file, media_type="application/octet-stream")
    got_status, headers, body, messages = await call(
        app, headers=request_headers, extensions=extensions
    )
    assert got_status == status
    etag = headers["etag"]
    st = os.stat(data_file)
    assert etag == etag_for(st.st_size, st.st_mtime_ns, st.st_ino)
    assert headers["last-modified"] == format_http_date(st.st_mtime)
    assert body == _expected(headers, request_headers, etag)
    assert int(headers["content-length"]) == len(body)
    kinds = {m["type"] for m in messages[1:]}
    if extensions is ZEROCOPY:
        assert "http.response.zerocopysend" in kinds
        assert all(m.get("count", 0) <= len(DATA) for m in messages[1:])
    elif extensions is PATHSEND and status == 200:
        assert kinds == {"http.response.pathsend"}
    else:
        assert kinds == {"http.response.body"}
        # Bounded reads: no message is bigger than the engine's largest message.
        assert max(len(m.get("body", b"")) for m in messages[1:]) <= 256 * 1024


async def test_conditional_statuses(data_file: Path) -> None:
    app = FileResponse(data_file, filename="r\u00e9sum\u00e9.bin")
    status, headers, _, _ = await call(app)
    etag, modified = headers["etag"], headers["last-modified"]
    assert headers["content-disposition"] == content_disposition("r\u00e9sum\u00e9.bin")
    status, headers, body, _ = await call(app, headers={"if-none-match": etag})
    assert (status, body, headers["etag"]) == (304, b"", etag)
    status, _, _, _ = await call(app, headers={"if-modified-since": modified})
    assert status == 304
    status, headers, body, _ = await call(app, headers={"if-match": '"other"'})
    assert status == 412 and headers["content-type"] == "application/problem+json"
    status, headers, body, _ = await call(app, headers={"range": f"bytes={len(DATA)}-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(DATA)}")
    assert b"Range Not Satisfiable" in body
    # If-Range: the right validator resumes, a stale one restarts from zero.
    status, _, body, _ = await call(app, headers={"range": "bytes=10-", "if-range": etag})
    assert (status, body) == (206, DATA[10:])
    status, _, body, _ = await call(app, headers={"range": "bytes=10-", "if-range": '"old"'})
    assert (status, body) == (200, DATA)


async def test_head_sends_no_body(data_file: Path) -> None:
    status, headers, body, _ = await call(FileResponse(data_file), method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(DATA)))
    assert headers["accept-ranges"] == "bytes"


async def test_missing_and_special_files_are_404(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path / "missing", tmp_path, tmp_path / "fifo"):
        status, headers, _, _ = await call(FileResponse(path))
        assert status == 404 and headers["content-type"] == "application/problem+json"


async def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    status, headers, body, _ = await call(
        FileResponse(tmp_path / "empty"), headers={"range": "bytes=0-"}
    )
    assert (status, body, headers["content-length"]) == (200, b"", "0")


async def test_file_shrinking_while_served_aborts(data_file: Path) -> None:
    """A body that would disagree with Content-Length is aborted, never ended cleanly."""
    seen = 0
    truncated = threading.Event()

    app = FileResponse(data_file, block_size=64 * 1024)
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal seen
        messages.append(message)
        seen += len(message.get("body", b""))
        if seen and not truncated.is_set():
            os.truncate(data_file, 100_000)
            truncated.set()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(StreamError, match="changed"):
        await app(scope, receive, send)
    assert not any(m.get("more_body") is False for m in messages[1:])
    assert seen < len(DATA)


async def test_file_rewritten_same_size_aborts(data_file: Path) -> None:
    """Same length, new content (new mtime): still aborted, no mixed body."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if len(messages) == 2:
            fd = os.open(data_file, os.O_WRONLY)
            os.pwrite(fd, b"X" * 10, 0)
            os.close(fd)
            os.utime(data_file, ns=(1, 2_000_000_000))

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(StreamError):
        await FileResponse(data_file, block_size=64 * 1024)(scope, receive, send)


@pytest.mark.parametrize("cls", [BytesSeekable, AsyncBytesSeekable])
@pytest.mark.parametrize(
    "request_headers",
    [{}, {"range": "bytes=1000-1999"}, {"range": "bytes=-10,0-9,5000-5999"}, {"range": "bytes=x"}],
)
async def test_seekable_response(cls: type[BytesSeekable], request_headers: dict[str, str]) -> None:
    source = cls(DATA[:20_000], chunk=777)
    status, headers, body, _ = await call(SeekableResponse(source), headers=request_headers)
    rep = Representation(20_000, source.etag)
    boundary = headers["content-type"].partition("boundary=")[2] or None
    decision = evaluate("GET", request_headers, rep, boundary=boundary)
    assert status == decision.status
    assert body == b"".join(iter_body(decision, rep, DATA[:20_000]))
    assert source.opened == [start for start, _ in decision.ranges]


async def test_seekable_source_short_aborts() -> None:
    source = BytesSeekable(DATA[:5000])
    source.size = 6000  # claims more than it has
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with pytest.raises(StreamError, match="ended"):
        await SeekableResponse(source)(scope, receive, send)
    assert not any(m.get("more_body") is False for m in messages[1:])


async def test_seekable_conditional() -> None:
    source = BytesSeekable(b"abc")
    status, _, body, _ = await call(
        SeekableResponse(source), headers={"if-none-match": source.etag}
    )
    assert (status, body, source.opened) == (304, b"", [])
    status, headers, body, _ = await call(SeekableResponse(source), method="HEAD")
    assert (status, body, headers["content-length"], source.opened) == (200, b"", "3", [])


async def test_seekable_open_failure_is_a_500_problem() -> None:
    class Broken(BytesSeekable):
        def open(self, offset: int):  # type: ignore[no-untyped-def]
            raise OSError("backend down")

    status, headers, body, _ = await call(SeekableResponse(Broken(b"abc")))
    assert (status, headers["content-type"]) == (500, "application/problem+json")
    assert b"OSError" in body
