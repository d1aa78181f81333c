"""``sluicegate demo``: the article's experiments, reproduced by one command.

::

    sluicegate demo                 # shortened, about two minutes
    sluicegate demo --full          # the article's parameters (20 chunks; ~15 minutes)
    sluicegate demo --with-node     # the same cases on equivalent Node servers, side by side

It prints the ``hello`` chunks as ``curl --trace`` shows them, runs every
backpressure scenario under the doctor with a client reading 10 MiB/s, prints one
table beside the article's Node figures, and writes ``--out`` (``reports/demo/``):
``index.html`` (the memory overlay, offline), ``figures.json``, ``demo.png`` and one
doctor report per run in ``runs/``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from sluicegate.cli.clitools import OneLineCommand, UsageFailure
from sluicegate.client import fetch
from sluicegate.demo.plan import NODE_FILES, SCENARIOS, Case, plan_cases
from sluicegate.demo.report import (
    RunSummary,
    format_recvs,
    print_table,
    result_text,
    summarize,
    write_chart_png,
    write_doctor_report,
    write_figures,
    write_html,
)
from sluicegate.demo.runner import (
    NODE_DIR,
    node_available,
    packet_trace,
    run_case,
    server_command,
    started_server,
)
from sluicegate.doctor.errors import DoctorError
from sluicegate.errors import ConfigError

__all__ = ["DemoResult", "demo_command", "run_demo"]

MiB = 1024 * 1024


@dataclass(slots=True)
class DemoResult:
    """What :func:`run_demo` produced."""

    summaries: list[RunSummary] = field(default_factory=list)
    hello: dict[str, str] = field(default_factory=dict)
    failed_download: dict[str, Any] = field(default_factory=dict)
    png: Path | None = None
    html: Path | None = None
    figures: Path | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


def _hello_section(
    out: Path, servers: Sequence[str], console: Console
) -> tuple[dict[str, str], dict[str, Any]]:
    """01: the two writes as curl --trace shows them; and a download that fails mid-way."""
    traces: dict[str, str] = {}
    failed: dict[str, Any] = {}
    for server in servers:
        command = server_command(server, "hello")
        with started_server(command, out / f"{server}-hello.log") as port:
            prefix = "/hello" if server == "python" else "/"
            for turn in ("1", "0"):
                label = (
                    f"{server} · {'a loop turn between the writes' if turn == '1' else 'one turn'}"
                )
                trace = packet_trace(port, f"{prefix}?turn={turn}")
                text = format_recvs(trace.recvs)
                if trace.segments is not None:
                    text += f"\n({trace.segments} TCP segments carried this response"
                    text += ")" if trace.kept_up else "; this reader merged some of them)"
                traces[label] = text
                console.print(f"[bold]{label}[/]")
                console.print(text, markup=False, highlight=False)
            if server == "python":
                result = asyncio.run(
                    fetch(f"http://127.0.0.1:{port}/fail?size=10M&after=3M", check=False)
                )
                failed = {
                    "status": result.status,
                    "bytes": result.bytes_received,
                    "size": result.size,
                    "complete": result.complete,
                    "error": result.error,
                }
                console.print(
                    f"[bold]a download that fails mid-way[/] (/fail): status {result.status} "
                    f"was already sent; the client got {result.bytes_received:,} of "
                    f"{result.size or 0:,} bytes: {result.error}"
                )
    return traces, failed


def run_demo(
    cases: Sequence[Case],
    out: Path,
    *,
    console: Console,
    title: str,
    notes: Sequence[str] = (),
    idle: float = 0.7,
    hello: bool = True,
    png: bool = True,
) -> DemoResult:
    """Run ``cases`` (see :func:`~sluicegate.demo.plan.plan_cases`); write reports to ``out``."""
    started = time.monotonic()
    result = DemoResult(notes=list(notes))
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    servers = sorted({c.server for c in cases}, key=lambda s: s != "python")
    if hello:
        console.rule("01 · two writes, as curl --trace shows the bytes of each recv()")
        result.hello, result.failed_download = _hello_section(logs, servers, console)
    console.rule(f"backpressure: {len(cases)} runs, each server under the doctor")
    plotly_src = "../../plotly.min.js"
    from plotly.offline import get_plotlyjs

    (out / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    for i, case in enumerate(cases, 1):
        label = f"[{i}/{len(cases)}] {case.scenario} · {case.server} · {case.rate_mib} MiB/s"
        if case.pause_for:
            label += f" · client pauses {case.pause_for:g} s"
        with console.status(label + " …"):
            run = run_case(case, out / "runs" / case.key / "work", idle=idle)
        summary = summarize(case, run.trace, run.load, run.problem)
        write_doctor_report(run.trace, out / "runs" / case.key, plotly_src)
        shutil.rmtree(out / "runs" / case.key / "work", ignore_errors=True)
        result.summaries.append(summary)
        console.print(
            f"{label}: peak RSS +{summary.peak_above_idle / MiB:.0f} MiB, "
            f"{result_text(summary)} ({run.seconds:.1f} s)"
        )
        if run.problem == "interrupted":
            result.interrupted = True
            break
    console.print()
    print_table(result.summaries, console, title=title)
    extra = {
        "title": title,
        "notes": list(notes),
        "hello": result.hello,
        "failed_download": result.failed_download,
    }
    result.figures = out / "figures.json"
    write_figures(result.figures, result.summaries, extra)
    result.html = out / "index.html"
    hello_text = "\n\n".join(f"{k}\n{v}" for k, v in result.hello.items())
    write_html(result.html, result.summaries, title=title, notes=notes, hello=hello_text)
    if png and result.summaries:
        why = write_chart_png(out / "demo.png", result.summaries, title=title)
        if why is None:
            result.png = out / "demo.png"
        else:
            result.notes.append(why)
            console.print(f"[yellow]{why}[/]")
    result.seconds = time.monotonic() - started
    return result


@click.command("demo", cls=OneLineCommand)
@click.option("--full", is_flag=True, help="The article's parameters: 20 chunks (~15 min).")
@click.option(
    "--out",
    "out_dir",
    default="reports/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write index.html, figures.json, demo.png and runs/.",
)
@click.option("--with-node", is_flag=True, help="Also run the equivalent Node servers.")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(SCENARIOS),
    help="Run only this scenario (repeatable).",
)
@click.option(
    "--chunks",
    type=click.IntRange(1, 1000),
    help="Chunks of 20 MiB in the 20 MiB/s runs (default 4; --full 20).",
)
@click.option("--no-pause", is_flag=True, help="Skip 06, the client that pauses reading.")
@click.option("--no-png", is_flag=True, help="Do not render demo.png with Chromium.")
def demo_command(
    full: bool,
    out_dir: Path,
    with_node: bool,
    scenarios: tuple[str, ...],
    chunks: int | None,
    no_pause: bool,
    no_png: bool,
) -> None:
    """Reproduce the article's experiments: memory of each scenario with a slow client.

    Every backpressure scenario (ignore-backpressure, the anti-pattern; wait; pull-source;
    generator; leaky) runs on a fresh server under the doctor while a client reads
    10 MiB/s, at producer rates of 20 and 100 MiB/s.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)  # a log file: wide rows beat wrapped ones
    servers = ["python"]
    if with_node:
        why = node_available()
        if why is not None:
            raise UsageFailure(f"--with-node: {why}")
        servers.append("node")
    try:
        cases = plan_cases(
            full=full,
            scenarios=scenarios or SCENARIOS,
            servers=servers,
            chunks=chunks,
            pause=not no_pause,
        )
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageFailure(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None
    slow = chunks or (20 if full else 4)
    title = "sluicegate demo: the article's experiments" + (
        " (full)" if full else f" (shortened: {slow} chunks at 20 MiB/s, 100 MiB/s for 2 s)"
    )
    notes = [
        "Producer: 20 MiB chunks made at 20 or 100 MiB/s (100 MiB chunks at 100 MiB/s with "
        "--full); the client reads 10 MiB/s with a small receive buffer, so TCP flow "
        "control really reaches the server. Peak RSS is above the server's idle RSS.",
        "The article's Node figures are for 20 chunks; the default run makes fewer, so the "
        "anti-pattern's backlog is smaller than the article's (run --full for its numbers).",
        "leaky sends the same bytes as 1 MiB messages through Channel(limit=4 MiB, "
        "policy='drop_oldest'): a live feed, not a file.",
    ]
    if with_node:
        notes.append(f"Node servers: {NODE_DIR} ({', '.join(sorted(set(NODE_FILES.values())))}).")
    try:
        result = run_demo(cases, out_dir, console=console, title=title, notes=notes, png=not no_png)
    except DoctorError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
    console.print(f"report: {result.html}")
    console.print(f"figures: {result.figures}")
    if result.png is not None:
        console.print(f"chart: {result.png}")
    console.print(f"done in {result.seconds:.0f} s")
    if result.interrupted:
        sys.exit(130)
