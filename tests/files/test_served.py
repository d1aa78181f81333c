"""206/416/304/multipart and path safety on real uvicorn servers (httptools and h11)."""

from __future__ import annotations

import socket
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from files_apps import Site

from sluicegate.http.ranges import Representation, evaluate, iter_body


@pytest.fixture
def site(tmp_path: Path, server: tuple[str, Any]) -> tuple[str, Site]:
    base, switch = server
    switch.app = Site(tmp_path)
    return base, switch.app


def _check_body(
    response: httpx.Response, data: bytes, request: dict[str, str], media_type: str
) -> None:
    boundary = response.headers["content-type"].partition("boundary=")[2] or None
    rep = Representation(len(data), response.headers.get("etag"), content_type=media_type)
    decision = evaluate("GET", request, rep, boundary=boundary)
    assert response.status_code == decision.status
    assert response.content == b"".join(iter_body(decision, rep, data))
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("target", ["/file", "/zip"])
def test_ranges_on_a_real_server(site: tuple[str, Site], target: str) -> None:
    base, app = site
    with httpx.Client(base_url=base, timeout=10) as client:
        whole = client.get(target)
        assert whole.status_code == 200
        data = whole.content
        if target == "/file":
            assert data == app.file.read_bytes()
        else:
            assert zipfile.ZipFile(BytesIO(data)).testzip() is None
            assert whole.headers["content-disposition"] == 'attachment; filename="bundle.zip"'
        etag = whole.headers["etag"]
        media_type = whole.headers["content-type"]
        n = len(data)
        for request in (
            {"range": "bytes=0-0"},
            {"range": f"bytes={n // 3}-"},
            {"range": "bytes=-100"},
            {"range": f"bytes=0-99,{n // 2}-{n // 2 + 99},{n - 10}-"},
            {"range": "bytes=10-19", "if-range": etag},
            {"range": "bytes=10-19", "if-range": '"stale"'},
        ):
            _check_body(client.get(target, headers=request), data, request, media_type)
        unsatisfiable = client.get(target, headers={"range": f"bytes={n}-"})
        assert unsatisfiable.status_code == 416
        assert unsatisfiable.headers["content-range"] == f"bytes */{n}"
        assert unsatisfiable.headers["content-type"] == "application/problem+json"
        not_modified = client.get(target, headers={"if-none-match": etag})
        assert (not_modified.status_code, not_modified.content) == (304, b"")
        head = client.head(target)
        assert (head.status_code, head.headers["content-length"]) == (200, str(n))
        failed = client.get(target, headers={"if-match": '"nope"'})
        assert failed.status_code == 412


def _raw_get(base: str, target: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/sub/%2e%2e/%2e%2e/secret.txt",
        "/static/%252e%252e/secret.txt",
        "/static//etc/passwd",
        "/static/escape",
        "/static/sub",
        "/static/sub/",
        "/static/hello.txt%00.png",
        "/static/..%2fsecret.txt",
    ],
)
def test_static_traversal_on_a_real_server(site: tuple[str, Site], target: str) -> None:
    base, _ = site
    status, body = _raw_get(base, target)
    assert status in (400, 404), (target, status)
    assert b"top secret" not in body


def test_static_serves_inside(site: tuple[str, Site]) -> None:
    base, _ = site
    assert _raw_get(base, "/static/hello.txt") == (200, b"hello")
    response = httpx.get(base + "/static/hello.txt", headers={"range": "bytes=1-2"})
    assert (response.status_code, response.content) == (206, b"el")


def test_inside_starlette(tmp_path: Path, server: tuple[str, Any]) -> None:
    """The responses work as Starlette responses, the apps as Starlette mounts."""
    from files_apps import live_feed
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    from sluicegate.http.files import FileResponse
    from sluicegate.http.seekable import SeekableResponse

    site = Site(tmp_path)

    async def download(request: Any) -> FileResponse:
        return FileResponse(site.file, filename="payload.bin")

    async def bundle(request: Any) -> SeekableResponse:
        return SeekableResponse(site.zip(), filename="bundle.zip")

    async def live(request: Any) -> Any:
        return site.spool.stream(live_feed(site.live_data))

    base, switch = server
    switch.app = Starlette(
        routes=[
            Route("/download", download),
            Route("/bundle.zip", bundle),
            Route("/live", live),
            Mount("/static", app=site.static),
            Mount("/spool", app=site.spool),
        ]
    )
    with httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/download", headers={"range": "bytes=5-9"})
        assert (r.status_code, r.content) == (206, site.file.read_bytes()[5:10])
        r = client.get("/bundle.zip", headers={"range": "bytes=0-3"})
        assert (r.status_code, r.content) == (206, b"PK\x03\x04")
        assert client.get("/static/hello.txt").content == b"hello"
        assert client.get("/static/escape").status_code == 404
        r = client.get("/live")
        assert r.content == site.live_data
        resumed = client.get(r.headers["content-location"], headers={"range": "bytes=100-"})
        assert (resumed.status_code, resumed.content) == (206, site.live_data[100:])


def test_file_truncated_while_served_is_cut_short(tmp_path: Path, server: tuple[str, Any]) -> None:
    """Real server, slow reader: the body stops short of Content-Length, never ends clean."""
    import os

    from sluicegate.http.files import FileResponse
    from tests.servers import read_headers, request

    path = tmp_path / "big.bin"
    size = 24 * 2**20  # well above what the kernel queues can hold ahead of the reader
    path.write_bytes(os.urandom(size))
    base, switch = server
    switch.app = FileResponse(path)
    port = int(base.rsplit(":", 1)[1])
    sock = request(port, "/", rcvbuf=64 * 1024)
    try:
        sock.settimeout(10)
        head, got = read_headers(sock)
        assert f"content-length: {size}".encode() in head.lower()
        while len(got) < 100_000:
            got += sock.recv(65536)
        os.truncate(path, 1_000_000)
        received = len(got)
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    finally:
        sock.close()
    assert received < size
