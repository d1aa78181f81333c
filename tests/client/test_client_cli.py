"""`sluicegate fetch` / `sluicegate swarm` through click: one-line errors, exit codes, JSON."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from client_servers import FileApp, StreamApp

from sluicegate.client.cli import fetch_command, swarm_command
from sluicegate.client.fetch import ExitCode

DATA = random.Random(11).randbytes(100_000)


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not a url"], "bad URL"),
        (["http://127.0.0.1:99999/"], "port"),
        (["https://127.0.0.1/"], "https is not supported"),
        (["http://127.0.0.1/", "--limit-rate", "fast"], "--limit-rate: bad rate 'fast'"),
        (["http://127.0.0.1/", "--schedule", "1s:pause=19s,2s:nap"], "item 2 '2s:nap'"),
        (["http://127.0.0.1/", "--pause-after", "1s"], "pause_after and pause_for"),
        (["http://127.0.0.1/", "--rcvbuf", "lots"], "--rcvbuf: bad size"),
        (["http://127.0.0.1/", "--timeout", "0"], "bad timeout"),
        (["http://127.0.0.1/", "-H", "nocolon"], "--header: bad header"),
        (["http://127.0.0.1/", "--resume"], "resume needs an output file"),
        (["http://127.0.0.1/", "-o", "/nonexistent-dir/f"], "does not exist"),
        (["http://127.0.0.1/", "--no-such-option"], "No such option"),
        ([], "Missing argument"),
    ],
)
def test_fetch_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(fetch_command, args)
    assert result.exit_code == ExitCode.USAGE
    assert message in _one_line_error(result.output)


def test_fetch_unwritable_output_path(tmp_path: Path) -> None:
    targets = [tmp_path / "file-not-dir" / "f"]
    (tmp_path / "file-not-dir").write_text("")
    if Path("/proc/self").exists():
        targets.append(Path("/proc/sluicegate-test.bin"))  # not writable, even for root
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        targets.append(locked / "f")
    for target in targets:
        result = CliRunner().invoke(fetch_command, ["http://127.0.0.1:1/", "-o", str(target)])
        assert result.exit_code == ExitCode.USAGE, target
        assert "bad output" in _one_line_error(result.output)
    assert not list(tmp_path.glob("**/*.part"))


def test_fetch_json_summary_and_exit_codes(server, tmp_path: Path) -> None:
    app = FileApp(DATA, cut_at=40_000)
    url = server(app) + "/f"
    out = tmp_path / "f.bin"
    runner = CliRunner()
    cut = runner.invoke(fetch_command, [url, "-o", str(out), "--json"])
    assert cut.exit_code == ExitCode.INCOMPLETE
    summary = json.loads(cut.stdout.splitlines()[0])
    assert summary["complete"] is False and summary["exit_code"] == 4
    assert not out.exists()
    done = runner.invoke(fetch_command, [url, "-o", str(out), "-C", "--verify", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    for key in ("status", "bytes", "duration", "rate", "ttfb", "complete", "verified", "digest"):
        assert key in summary
    assert summary["status"] == 206 and summary["bytes"] == len(DATA) - 40_000
    assert summary["complete"] is True and summary["verified"] is True
    assert out.read_bytes() == DATA
    app.digest = "wrong"
    bad = runner.invoke(fetch_command, [url, "-o", str(tmp_path / "g"), "--verify", "-q"])
    assert bad.exit_code == ExitCode.DIGEST_MISMATCH
    assert "digest mismatch" in _one_line_error(bad.output)


def test_fetch_http_error_and_refused() -> None:
    refused = CliRunner().invoke(fetch_command, ["http://127.0.0.1:1/", "--timeout", "5s"])
    assert refused.exit_code == ExitCode.CONNECTION
    assert "connection failed" in _one_line_error(refused.output)


def test_fetch_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(fetch_command, ["--help"])
    assert result.exit_code == 0
    for line in ("0  complete", "4  incomplete", "5  digest mismatch", "6  connection error"):
        assert line in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://192.0.2.7/"], "refusing to swarm '192.0.2.7'"),
        (["http://example.com/"], "refusing to swarm 'example.com'"),
        (["http://127.0.0.1/", "--mix", "fast:1,slow:2"], "slow needs a rate"),
        (["http://127.0.0.1/", "--mix", "fast:0"], "weight '0'"),
        (["http://127.0.0.1/", "--duration", "soon"], "--duration: bad duration"),
        (["http://127.0.0.1/", "--clients", "0"], "--clients"),
        (["ftp://127.0.0.1/"], "bad URL"),
    ],
)
def test_swarm_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(swarm_command, args)
    assert result.exit_code == 2
    assert message in _one_line_error(result.output)


@pytest.mark.parametrize(
    ("command", "args", "target", "interrupted"),
    [
        (fetch_command, [], "fetch", "interrupted: any FILE.part is kept for --resume"),
        (swarm_command, [], "swarm", "interrupted"),
        (swarm_command, ["--sse"], "sse_swarm", "interrupted"),
    ],
)
def test_an_interrupt_or_a_bug_is_one_line(
    monkeypatch: pytest.MonkeyPatch, command: Any, args: list[str], target: str, interrupted: str
) -> None:
    tool = command.name
    for raised, code, line in [
        (KeyboardInterrupt(), 130, interrupted),
        (RuntimeError("boom"), 1, f"sluicegate {tool}: internal error: RuntimeError: boom"),
    ]:

        async def broken(*_: object, raised: BaseException = raised, **__: object) -> None:
            raise raised

        monkeypatch.setattr(f"sluicegate.client.cli.{target}", broken)
        result = CliRunner().invoke(command, ["http://127.0.0.1:9/", *args])
        assert result.exit_code == code, result.output
        assert _one_line_error(result.output) == line


def test_swarm_json_and_table(server) -> None:
    url = server(StreamApp(size=10_000))
    runner = CliRunner()
    result = runner.invoke(swarm_command, [url, "-n", "3", "--requests", "9", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["completed"] == 9 and summary["bytes"] == 90_000
    for key in ("throughput", "ttfb_p50", "ttfb_p99", "incomplete", "errored", "classes"):
        assert key in summary
    table = runner.invoke(swarm_command, [url, "-n", "2", "--requests", "2"])
    assert table.exit_code == 0 and "completed" in table.output and "throughput" in table.output
