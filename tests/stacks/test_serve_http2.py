"""``sluicegate serve --http2``: HTTP/1.1 and h2c on one port, with uvicorn's HTTP/2."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from tests.servers import stop, wait_for_port
from tests.stacks import matrix, producers

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def served() -> Iterator[matrix.Server]:
    pytest.importorskip("zttp")
    port = matrix.free_port()
    argv = [sys.executable, "-m", "sluicegate", "serve", "--http2", "--port", str(port)]
    # With a guard too: its hang-up protocol wraps the HTTP/2 one.
    argv += ["--app", "tests.stacks.matrix_app:app", "--stall-timeout", "30s"]
    argv += ["--log-level", "warning"]
    proc = subprocess.Popen(
        argv, cwd=matrix.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(proc, port, "sluicegate serve --http2", timeout=60)
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            yield matrix.Server("serve-http2", port, proc, True, client)
    finally:
        stop(proc)


@pytest.mark.parametrize("h2", [True, False])
def test_both_protocols_on_one_port(served: matrix.Server, h2: bool, tmp_path: Path) -> None:
    server = matrix.Server(served.kind, served.port, served.proc, h2, served.client)
    out = tmp_path / "body"
    result = subprocess.run(
        matrix.curl(server, "/asgi/body", "-w", "%{http_version}", out=str(out)),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (b"2" if h2 else b"1.1")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == producers.body_digest()


def test_h2_failure_resets_the_stream(served: matrix.Server, tmp_path: Path) -> None:
    code, got = matrix.check_failure(served, "asgi", tmp_path)
    assert code == 92  # "HTTP/2 stream was not closed cleanly: INTERNAL_ERROR"
    assert 0 < got < 3 * producers.FAIL_CHUNK


def test_h2_disconnect_closes_the_producer(served: matrix.Server) -> None:
    closing = matrix.check_closed(served, "asgi")
    assert closing.seconds is not None and closing.seconds <= matrix.CLOSE_WITHIN


def test_h2_trailers_carry_the_digest(served: matrix.Server) -> None:
    assert matrix.check_trailers(served)


def test_without_http2_support_it_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sluicegate.cli.serve.HTTP2_PROTOCOL", "no_such_module.here:Protocol")
    result = CliRunner().invoke(main, ["serve", "--http2", "--port", "0"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: --http2 needs uvicorn's optional HTTP/2 support")
