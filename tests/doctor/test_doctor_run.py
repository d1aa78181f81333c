"""Orchestration and the CLI on bad input: one clear line, non-zero exit, and whatever
was sampled is still written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from sluicegate.doctor.cli import doctor_command
from sluicegate.doctor.run import DoctorConfig, fill_port, listening_port, run_doctor
from sluicegate.errors import ConfigError
from sluicegate.units import parse_duration

HERE = Path(__file__).parent
SERVER = [
    sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "doctor_app:app",
    "--port", "0", "--log-level", "warning",
]  # fmt: skip


def doctor(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        doctor_command, ["-o", str(out), "--grace", "3s", *args], catch_exceptions=False
    )
    return result.exit_code, result.output, out


def one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    assert "Traceback" not in output
    return errors[0]


@pytest.mark.parametrize(
    ("text", "seconds"), [("10ms", 0.01), ("1.5s", 1.5), ("2m", 120.0), ("3", 3.0), (".5s", 0.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="bad duration"):
        parse_duration("soon")


def test_fill_port() -> None:
    assert fill_port("curl localhost:{port}/x?p={port}", 81) == "curl localhost:81/x?p=81"


def test_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    code, output, _ = doctor(tmp_path, "--interval", "fast", "--", "python")
    assert code == 2 and "bad duration 'fast'" in output


def test_server_that_exits_early(tmp_path: Path) -> None:
    code, output, out = doctor(
        tmp_path, "--", sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(3)"
    )
    assert code == 1
    assert one_error_line(output) == "Error: the server exited with code 3 before it opened a port"
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["samples"] and report["samples"][0]["pid"] == report["server_pid"]
    assert out.read_text().startswith("<!doctype html>")


def test_server_that_never_listens(tmp_path: Path) -> None:
    code, output, out = doctor(
        tmp_path, "--port-timeout", "1s", "--",
        sys.executable, "-c", "import time; time.sleep(60)",
    )  # fmt: skip
    assert code == 1
    assert "opened no port within 1 s (see --port-timeout)" in one_error_line(output)
    pid = json.loads(out.with_suffix(".json").read_text())["server_pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_missing_server_command(tmp_path: Path) -> None:
    code, output, out = doctor(tmp_path, "--", str(tmp_path / "no-such-server"))
    assert code == 1
    assert "cannot start the server command" in one_error_line(output)
    assert out.exists()


def test_failing_on_port_command(tmp_path: Path) -> None:
    code, output, out = doctor(
        tmp_path, "--idle", "0.2s", "--on-port", "echo port=$PORT; exit 7", "--", *SERVER
    )
    assert code == 1
    assert one_error_line(output) == "Error: the --on-port command exited with code 7"
    report = json.loads(out.with_suffix(".json").read_text())
    assert {s["pid"] for s in report["samples"]} == {report["server_pid"]}
    kinds = [e["kind"] for e in report["events"]]
    assert kinds[:3] == ["server-start", "port-open", "load-start"]
    assert "load-end" in kinds and kinds[-1] == "server-exit"


def test_duration_without_load_and_without_probe(tmp_path: Path) -> None:
    result = run_doctor(DoctorConfig(command=SERVER, duration=1.0, probe=False, grace=3))
    assert result.problem is None
    assert result.trace.port is not None and result.trace.samples == []
    assert result.server_exit == 0  # uvicorn stopped gracefully on SIGINT
    assert result.pids_killed == []
    assert listening_port(result.trace.server_pid or 0) is None


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_ends_a_session_without_load_command(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    doctor_proc = subprocess.Popen(
        [sys.executable, "-m", "sluicegate", "doctor", "-o", str(out), "--", *SERVER],
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group: if the test gives up, the server it started goes too.
        start_new_session=True,
        # A test run started in the background by a shell inherits SIGINT ignored, and
        # so would the doctor (Python then installs no KeyboardInterrupt handler).
        preexec_fn=_default_sigint,
    )
    try:
        assert doctor_proc.stderr is not None
        line = doctor_proc.stderr.readline()  # blocks until the server listens
        assert "port-open" in line
        time.sleep(0.5)
        doctor_proc.send_signal(signal.SIGINT)
        rest = doctor_proc.communicate(timeout=60)[1]
    finally:
        if doctor_proc.poll() is None:
            os.killpg(doctor_proc.pid, signal.SIGKILL)
            doctor_proc.wait()
    assert doctor_proc.returncode == 0, rest
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["samples"] and "interrupted" in [e["kind"] for e in report["events"]]
    assert not psutil.pid_exists(report["server_pid"])


def test_every_worker_process_is_sampled(tmp_path: Path) -> None:
    client = f"{sys.executable} {HERE / 'load_client.py'}"
    code, output, out = doctor(
        tmp_path, "--idle", "0.3s", "--on-port", f"{client} {{port}} / 20",
        "--", *SERVER, "--workers", "2",
    )  # fmt: skip
    assert code == 0, output
    trace = json.loads(out.with_suffix(".json").read_text())
    server = trace["server_pid"]
    children = {p["pid"] for p in trace["processes"] if p["ppid"] == server}
    looping = {s["pid"] for s in trace["samples"] if s.get("loop_delay_ms") is not None}
    assert len(looping) == 2 and looping <= children  # both workers, each with its loop
    assert server in {s["pid"] for s in trace["samples"]}  # the supervisor too


def test_listening_ports_of_a_process_tree() -> None:
    code = (
        "import socket, sys, time\n"
        "a = socket.create_server(('127.0.0.1', 0)); b = socket.create_server(('127.0.0.1', 0))\n"
        "print(a.getsockname()[1], b.getsockname()[1], flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = sorted(int(p) for p in proc.stdout.readline().split())
        assert listening_port(proc.pid) == ports[0]
        assert listening_port(proc.pid, ports[1]) == ports[1]
        assert listening_port(proc.pid, 1) is None
    finally:
        proc.kill()
        proc.wait()


def test_waiting_for_a_port_the_server_does_not_open(tmp_path: Path) -> None:
    code, output, _ = doctor(tmp_path, "--port", "1", "--port-timeout", "1s", "--", *SERVER)
    assert code == 1
    assert "the server opened no port 1 within 1 s" in one_error_line(output)
