"""A failure after the headers reaches real clients as an incomplete transfer, on every server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(server: str, port: int) -> list[str]:
    app = "tests.abort_app:app"
    if server.startswith("uvicorn"):
        http = server.split("-")[1]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--http",
            http,
            "--log-level",
            "critical",
        ]
    if server == "hypercorn":
        return [
            sys.executable,
            "-m",
            "hypercorn",
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "critical",
        ]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "critical",
        app,
    ]


SERVERS = ["uvicorn-httptools", "uvicorn-h11", "hypercorn", "granian"]


@contextlib.contextmanager
def serving(server: str) -> Iterator[int]:
    module = server.split("-")[0]
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        _command(server, port), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(proc, port, server)
        yield port
    finally:
        stop(proc)


@pytest.fixture(scope="module", params=SERVERS)
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with serving(request.param) as port:
        yield port


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("path", ["/chunked", "/sized"])
def test_curl_sees_an_incomplete_transfer(server_port: int, path: str, tmp_path: Path) -> None:
    out = tmp_path / "body"
    result = subprocess.run(
        ["curl", "-sS", "-o", str(out), f"http://127.0.0.1:{server_port}{path}"],
        capture_output=True,
        timeout=30,
    )
    # 18: "transfer closed with outstanding read data remaining" (partial file)
    assert result.returncode == 18, result.stderr
    # What was produced before the failure arrives, at most: granian drops bytes it
    # had accepted but not yet written when the app raises.
    assert 0 < out.stat().st_size <= 200_000


@pytest.mark.parametrize("path", ["/chunked", "/sized"])
def test_httpx_raises(server_port: int, path: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{server_port}{path}", timeout=30)
