"""Head-first pages on a real server: the head reaches the socket, and a real browser,
before the slow section is done."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from html_support import assert_well_formed, running
from starlette.responses import HTMLResponse

from sluicegate.cli.browser import find_chromium, headless_args
from sluicegate.http.html import HTMLStream, Retry, Section

CHROMIUM = find_chromium()

HEAD = (
    "<!doctype html><html><head><meta charset=utf-8><title>head first</title>"
    '<link rel="stylesheet" href="/style.css"></head><body><h1>Orders</h1>'
)


class PageApp:
    """``/``: a head-first page whose one section takes ``slow`` seconds; ``/style.css``.

    Records (``time.perf_counter``, same clock as the test) when the stylesheet was
    requested and when the slow section was produced.
    """

    def __init__(self, slow: float, *, whole: bool = False) -> None:
        self.slow = slow
        #: The control: render the section first, then send the page in one piece.
        self.whole = whole
        self.times: dict[str, float] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/":

            async def slow_section() -> str:
                await asyncio.sleep(self.slow)
                self.times["section produced"] = time.perf_counter()
                return '<p id="slow">the slow section</p>'

            if self.whole:
                page: Any = HTMLResponse(HEAD + await slow_section() + "</body></html>")
            else:
                page = HTMLStream(
                    HEAD,
                    [Section(slow_section, "<p>unavailable</p>", name="slow")],
                    retry=Retry(times=1, timeout=self.slow + 5),
                )
            await page(scope, receive, send)
            return
        if path == "/style.css":
            self.times.setdefault("stylesheet requested", time.perf_counter())
            body, status, kind = b"h1 { color: rgb(1, 2, 3); }", 200, b"text/css"
        else:
            body, status, kind = b"not found", 404, b"text/plain"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


def test_head_reaches_the_socket_before_the_slow_section_is_produced() -> None:
    app = PageApp(slow=0.6)
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        head_arrived: float | None = None
        while True:
            more = sock.recv(65536)
            if not more:
                break
            data += more
            if head_arrived is None and b"</head>" in data:
                head_arrived = time.perf_counter()
                section_already_there = b"the slow section" in data
    assert head_arrived is not None
    assert not section_already_there
    assert head_arrived < app.times["section produced"]
    status, _, rest = data.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in headers.lower()
    document = b"".join(_dechunk(body)).decode()
    assert_well_formed(document)
    assert '<p id="slow">the slow section</p>' in document


def _dechunk(body: bytes) -> list[bytes]:
    parts = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return parts
        parts.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def _chromium(profile: Path, url: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` with --dump-dom; end it (and its children) by pid."""
    assert CHROMIUM is not None
    args = [
        *headless_args(CHROMIUM, profile),
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    # Its own session, so the renderer and utility processes can be ended with it.
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish in 60 s: {err[-2000:]}")
    finally:
        # Whatever of its process group is left (it normally exits whole).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
@pytest.mark.parametrize("whole", [False, True], ids=["head-first", "control-sent-whole"])
def test_browser_fetches_the_stylesheet_before_the_slow_section_is_produced(
    tmp_path: Path, whole: bool
) -> None:
    app = PageApp(slow=1.5, whole=whole)
    with running(app) as port:
        result = _chromium(tmp_path / "profile", f"http://127.0.0.1:{port}/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert '<p id="slow">the slow section</p>' in result.stdout  # the page finished
    assert "stylesheet requested" in app.times, "chromium never asked for /style.css"
    lead = app.times["section produced"] - app.times["stylesheet requested"]
    if whole:
        # The control shows the check can fail: a page sent whole is parsed (and its
        # stylesheet found) only after the section was produced.
        assert lead < 0, f"control: stylesheet requested {lead:.3f}s before the section"
    else:
        # Head first: the stylesheet was fetched while the section was still rendering
        # (about 1.5 s of head start).
        assert lead > 0, f"stylesheet requested {-lead:.3f}s after the section was produced"
