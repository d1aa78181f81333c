"""A shortened ``sluicegate demo`` end to end: real uvicorn servers under the doctor.

Chunks of 8 MiB made at 400 MiB/s for a client reading 32 MiB/s: the producer is
done within a fifth of a second, so the anti-pattern's backlog reaches most of the
48 MiB while every backpressured scenario holds a chunk or two.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from sluicegate.cli import main
from sluicegate.demo.cli import run_demo
from sluicegate.demo.plan import SCENARIOS, Case
from sluicegate.demo.report import result_text, summarize
from sluicegate.demo.runner import node_available, run_case

MiB = 1024 * 1024
CHUNK = 8 * MiB
COUNT = 6


def _cases(server: str = "python") -> list[Case]:
    fast = {"rate": 400 * MiB, "client_rate": 32 * MiB, "server": server}
    cases = [Case(s, chunk=CHUNK, count=COUNT, **fast) for s in SCENARIOS if s != "leaky"]  # type: ignore[arg-type]
    cases.append(Case("leaky", chunk=MiB, count=COUNT * 8, limit=4 * MiB, **fast))  # type: ignore[arg-type]
    return cases


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str, Path]:
    out = tmp_path_factory.mktemp("demo")
    buffer = io.StringIO()
    result = run_demo(
        _cases(), out, console=Console(file=buffer, width=160), title="test demo", idle=0.3,
        png=False,
    )  # fmt: skip
    return result, buffer.getvalue(), out


def test_the_table_has_one_row_per_scenario(demo: tuple[object, str, Path]) -> None:
    _, printed, _ = demo
    table = printed[printed.index("test demo") :]
    for scenario in SCENARIOS:
        assert re.search(rf"{scenario}( ✗)? +400 MiB/s +\d+ MiB", table), scenario
    assert "article, Node" in table and "kernel" in table and "TTFB" in table


def test_every_run_completed_and_was_sampled(demo: tuple[object, str, Path]) -> None:
    result, _, _ = demo
    summaries = result.summaries  # type: ignore[attr-defined]
    assert [s.scenario for s in summaries] == list(SCENARIOS)
    for s in summaries:
        assert s.problem is None, (s.scenario, s.problem)
        assert s.complete, (s.scenario, s.error)
        assert s.idle_rss > 0 and s.curve_rss and s.send_queue_peak is not None
        assert s.ttfb is not None and s.duration is not None
    whole = [s for s in summaries if s.scenario != "leaky"]
    assert all(s.bytes == CHUNK * COUNT == s.produced for s in whole)


def test_the_anti_pattern_grows_while_backpressure_stays_bounded(
    demo: tuple[object, str, Path],
) -> None:
    result, _, _ = demo
    peak = {s.scenario: s.peak_above_idle for s in result.summaries}  # type: ignore[attr-defined]
    # The producer got ~40 MiB ahead of the client; a backpressured one never can.
    assert peak["ignore-backpressure"] >= peak["generator"] + 2 * CHUNK, peak
    for scenario in ("wait", "pull-source", "generator"):
        assert peak[scenario] <= 3 * CHUNK, peak
    assert peak["leaky"] <= 2 * CHUNK, peak
    leaky = next(s for s in result.summaries if s.scenario == "leaky")  # type: ignore[attr-defined]
    assert leaky.dropped > 0 and leaky.bytes + leaky.dropped == leaky.produced


def test_the_reports_are_written(demo: tuple[object, str, Path]) -> None:
    result, printed, out = demo
    doc = json.loads((out / "figures.json").read_text())
    assert len(doc["runs"]) == len(SCENARIOS) and doc["runs"][0]["curve_rss"]
    assert "5..Hello.." in next(iter(doc["hello"].values()))
    assert doc["failed_download"]["complete"] is False
    page = (out / "index.html").read_text()
    assert "Plotly" in page and "runs/python-generator-400M/report.html" in page
    for s in result.summaries:  # type: ignore[attr-defined]
        report = (out / "runs" / s.key / "report.html").read_text()
        assert '<script src="../../plotly.min.js"></script>' in report
        assert (out / "runs" / s.key / "report.json").is_file()
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    # 01: with a loop turn the two writes are two packets (plus the head's), as in the
    # article; in one turn they are one.
    turn, one = doc["hello"].values()
    assert "(3 TCP segments" in turn
    assert "0000: 35 0d 0a 48 65 6c 6c 6f 0d 0a" in turn and "57 6f 72" in turn  # Hello, Wor
    assert "(2 TCP segments" in one and "HelloWorld" in one
    assert "curl --trace" in printed


def test_the_safety_cap_stops_the_anti_pattern(tmp_path: Path) -> None:
    case = Case(
        "ignore-backpressure", rate=400 * MiB, chunk=CHUNK, count=COUNT, client_rate=8 * MiB,
        cap=2 * CHUNK,
    )  # fmt: skip
    run = run_case(case, tmp_path, idle=0.3)
    s = summarize(case, run.trace, run.load, run.problem)
    assert result_text(s) == "cut by the safety cap"
    assert not s.complete and s.bytes < 2 * CHUNK, s.bytes  # the backlog was not sent
    assert s.backlog_peak <= 2 * CHUNK


@pytest.mark.skipif(node_available() is not None, reason="node is not available")
def test_a_node_server_runs_through_the_same_client_and_sampler(tmp_path: Path) -> None:
    case = _cases("node")[0]  # 02: Node ignoring backpressure
    run = run_case(case, tmp_path, idle=0.3)
    assert run.problem is None
    rss = [s.rss for s in run.trace.samples if s.rss]
    queues = [s.send_queue for s in run.trace.samples if s.send_queue is not None]
    assert len(rss) > 20 and queues and max(queues) > 0
    assert run.load["fetch"]["complete"] and run.load["server"]["produced"] == CHUNK * COUNT


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--scenario", "nope"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(main, ["demo", "--out", str(blocker / "sub")])
    assert result.exit_code == 2 and "cannot create --out" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setenv("PATH", str(tmp_path))
    if shutil.which("node") is None:
        result = runner.invoke(main, ["demo", "--with-node", "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "node is not on PATH" in result.output
