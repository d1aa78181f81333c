"""End to end: `sluicegate doctor` runs uvicorn with a load command, writes the report,
and the report draws its charts in a real (headless) Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.cli.browser import find_chromium, headless_args

HERE = Path(__file__).parent
CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("doctor") / "report.html"
    client = f"{sys.executable} {HERE / 'load_client.py'}"
    load = (
        f"{client} {{port}} '/block?ms=150' 2 && {client} $PORT / 5 "
        f"&& {client} {{port}} '/big?mib=4' 8 --slow 0.5"
    )
    result = CliRunner().invoke(
        main,
        [
            "doctor",
            "--idle",
            "0.5s",
            "-o",
            str(out),
            "--on-port",
            load,
            "--",
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(HERE),
            "doctor_app:app",
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "event-loop-blocked" in result.output and f"report: {out}" in result.output
    return out


def test_report_and_samples_from_the_server(report: Path) -> None:
    data = json.loads(report.with_suffix(".json").read_text())
    server = data["server_pid"]
    pids = {s["pid"] for s in data["samples"]}
    assert pids == {server}
    assert len(data["samples"]) > 100  # 10 ms sampling over a few seconds
    assert max(s.get("loop_delay_ms", 0) for s in data["samples"]) >= 100
    assert max(s.get("connections", 0) for s in data["samples"]) >= 1
    findings = {f["id"]: f for f in data["findings"]}
    assert findings["event-loop-blocked"]["culprits"][0].startswith("app (")
    assert data["port"] and data["load_command"].count("{port}") == 2
    page = report.read_text()
    assert "<script src" not in page and len(page) > 1_000_000  # plotly.js is inline


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            *headless_args(CHROMIUM, profile),
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
def test_charts_render_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="main-svg"' in dom.stdout  # plotly drew the figure
    assert dom.stdout.count('class="scatterlayer') >= 6  # one per stacked chart
    assert "event-loop-blocked" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console

    shot = tmp_path / "report.png"
    run = chromium(
        tmp_path / "profile2", "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()
    )
    assert run.returncode == 0, run.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
