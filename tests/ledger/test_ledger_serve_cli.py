"""``sluicegate serve --ledger URL --workers N``: flags, one-line errors, real processes."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.cli.serve import ProcessSettings, bind_socket
from sluicegate.engine.response import defaults
from tests.servers import TCP_ESTABLISHED, read_headers, request, stop, tcp_state, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "Error: Invalid value for '--workers': 0 is not in the range"),
        (["--workers", "many"], "Error: Invalid value for '--workers'"),
        (["--workers", "257"], "Error: Invalid value for '--workers'"),
        (["--ledger", "ftp://host/x"], "Error: --ledger: unsupported ledger URL 'ftp://host/x'"),
        (["--ledger", "sqlite://rel.db"], "Error: --ledger: sqlite URL needs an absolute path"),
        (["--ledger", "sqlite:"], "Error: --ledger: sqlite URL without a path"),
        (["--ledger", "/no/such/dir/t.db"], "Error: --ledger: no such directory: /no/such/dir"),
        (["--ledger", "redis://127.0.0.1:1/0"], "Error: --ledger: cannot reach redis"),
    ],
)
def test_bad_values_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert defaults.ledger is None  # nothing was set up on the way to the error


def test_settings_survive_the_trip_to_a_worker() -> None:
    settings = ProcessSettings(app="m:a", policies={"max_streams": 3}, ledger="/x.db")
    assert ProcessSettings.from_json(settings.to_json()) == settings


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    with contextlib.closing(bind_socket("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "sluicegate", "serve", "--port", str(port), *args]
    argv += ["--log-level", "warning"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(proc, port, "sluicegate serve", timeout=60)  # a busy machine starts slowly
        yield port, proc
    finally:
        stop(proc)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def record(port: int, transfer_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:  # the worker commits the end within its commit delay
        rec: dict[str, object] = json.loads(get(port, f"/transfers/{transfer_id}")[2])
        if rec["state"] != "streaming" or time.monotonic() > deadline:
            return rec
        time.sleep(0.05)


def test_ledger_records_every_stream_and_serves_it_at_transfers(tmp_path: Path) -> None:
    db = tmp_path / "transfers.db"
    with serving("--ledger", str(db)) as (port, _):
        status, headers, body = get(port, "/hello")
        assert status == 200 and body == b"HelloWorld"
        transfer = headers["transfer-id"]
        assert headers["link"] == f'</transfers/{transfer}>; rel="transfer-status"'
        rec = record(port, transfer)
        assert rec["state"] == "completed" and rec["bytes_sent"] == 10
        assert rec["path"] == "/hello"
    assert db.exists()


def test_a_redis_ledger_works_the_same(redis_url: str) -> None:
    with serving("--ledger", redis_url) as (port, _):
        _, headers, _ = get(port, "/hello")
        assert record(port, headers["transfer-id"])["state"] == "completed"


def test_workers_each_set_up_the_ledger_and_the_guard(tmp_path: Path) -> None:
    db = tmp_path / "transfers.db"
    args = ("--workers", "2", "--ledger", str(db), "--stall-timeout", "1s", "--sndbuf", "64K")
    with serving(*args) as (port, proc):
        deadline = time.monotonic() + 60  # two processes start up on a busy machine
        while True:  # both workers have opened the ledger: one live owner each
            owners = owner_pids(db)
            workers = worker_pids(proc.pid)
            if len(workers) == 2 and workers <= owners:
                break
            assert time.monotonic() < deadline, (workers, owners)
            time.sleep(0.1)
        ids = {get(port, "/hello")[1]["transfer-id"] for _ in range(10)}
        assert len(ids) == 10
        assert all(record(port, t)["state"] == "completed" for t in ids)
        # The guard works in the workers too: a reader that stops is cut.
        size = 50 * 2**20
        with contextlib.closing(request(port, f"/download?size={size}", rcvbuf=4096)) as stalled:
            _, first = read_headers(stalled)
            # Read nothing until the server hangs up: 1 s after its buffers filled,
            # however long filling them took (the default stall timeout is 60 s).
            hung_up = time.monotonic() + 30
            while tcp_state(stalled) == TCP_ESTABLISHED:
                assert time.monotonic() < hung_up, "the stalled reader was not cut"
                time.sleep(0.05)
            got = len(first)
            stalled.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while chunk := stalled.recv(1 << 16):
                    got += len(chunk)
        assert got < size / 10


def owner_pids(db: Path) -> set[int]:
    """The pids of the ledger's owners; none while the file or its tables are not made yet."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return {pid for (pid,) in conn.execute("SELECT pid FROM owners")}
    except sqlite3.OperationalError:  # no file, no table yet, or locked for a moment
        return set()


def worker_pids(master: int) -> set[int]:
    """The serving processes under ``master`` (not multiprocessing's resource tracker)."""
    pids = set()
    for child in psutil.Process(master).children():
        with contextlib.suppress(psutil.Error):  # it ended while we looked
            if "resource_tracker" not in " ".join(child.cmdline()):
                pids.add(child.pid)
    return pids
