"""A failure after the headers reaches real clients as an incomplete transfer, on every server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import SERVERS, serving


@pytest.fixture(scope="module", params=SERVERS)
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with serving(request.param, "tests.abort_app:app") as port:
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
