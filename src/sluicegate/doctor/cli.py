"""``sluicegate doctor``: the command line around :func:`~sluicegate.doctor.run.run_doctor`.

    sluicegate doctor --on-port 'curl -s localhost:$PORT/' -o report.html -- \\
        python -m uvicorn app:app --port 0
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import click
from rich.console import Console

from sluicegate.cli.clitools import OneLineCommand
from sluicegate.doctor.analysis import analyze
from sluicegate.doctor.report import print_summary, render_html
from sluicegate.doctor.run import DoctorConfig, run_doctor
from sluicegate.doctor.samples import Event
from sluicegate.errors import ConfigError
from sluicegate.units import parse_duration


class _Duration(click.ParamType):  # type: ignore[type-arg]
    """A finite duration (``10ms``, ``1.5s``, ``2m``) through :mod:`sluicegate.units`."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            seconds = parse_duration(str(value), forever=False)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0 and param is not None and param.name in ("interval", "net_interval"):
            self.fail("must be more than 0", param, ctx)
        return seconds


DURATION = _Duration()


def docs_base() -> str:
    """Where the report links the diagnosis pages: this checkout's docs when present."""
    local = Path(__file__).resolve().parents[3] / "docs" / "diagnoses"
    return local.as_uri() if local.is_dir() else "docs/diagnoses"


@click.command(
    "doctor", cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--on-port",
    "on_port",
    metavar="CMD",
    help="Shell command run once the server listens ({port} and $PORT are set); "
    "the server is stopped when it exits.",
)
@click.option("--duration", type=DURATION, default=None, help="Stop after this long (e.g. 30s).")
@click.option(
    "--interval",
    type=DURATION,
    default="10ms",
    show_default=True,
    help="Sampling interval (loop delay, CPU, RSS, GC).",
)
@click.option(
    "--net-interval",
    type=DURATION,
    default="100ms",
    show_default=True,
    help="Interval of the socket, fd and task counts.",
)
@click.option(
    "--port-timeout",
    type=DURATION,
    default="15s",
    show_default=True,
    help="How long the server may take to open a port.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Wait for this port when the server opens several (default: the lowest).",
)
@click.option(
    "--grace",
    type=DURATION,
    default="5s",
    show_default=True,
    help="Time between the stop signal and SIGKILL.",
)
@click.option(
    "--idle",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Idle time recorded before and after the --on-port command.",
)
@click.option("--stop-signal", type=click.Choice(["INT", "TERM"]), default="INT", show_default=True)
@click.option(
    "--no-probe",
    is_flag=True,
    help="Run the same scenario without the probe (to measure its overhead).",
)
@click.option(
    "--samples-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the probes' raw JSON-lines files here.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default="doctor-report.html",
    show_default=True,
    help="The HTML report; the samples go beside it as .json.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def doctor_command(
    on_port: str | None,
    duration: float | None,
    interval: float,
    net_interval: float,
    port_timeout: float,
    port: int | None,
    grace: float,
    idle: float,
    stop_signal: str,
    no_probe: bool,
    samples_dir: Path | None,
    output: Path,
    command: tuple[str, ...],
) -> None:
    """Run a Python server under load and chart its memory, CPU, event-loop delay and
    socket buffers, with a diagnosis.

    Put the server command after "--". Example:

        sluicegate doctor --on-port 'curl -s localhost:$PORT/' -- uvicorn app:app --port 0
    """
    console = Console(stderr=True, highlight=False)
    config = DoctorConfig(
        command=command,
        on_port=on_port,
        duration=duration,
        interval=interval,
        net_interval=net_interval,
        port_timeout=port_timeout,
        port=port,
        grace=grace,
        idle=idle,
        stop_signal=signal.SIGINT if stop_signal == "INT" else signal.SIGTERM,
        probe=not no_probe,
        samples_dir=samples_dir,
    )

    def show(event: Event) -> None:
        if event.kind in ("port-open", "load-start", "load-end"):
            console.print(f"[dim]doctor: {event.kind} {event.detail}[/]")

    result = run_doctor(config, on_event=show)
    trace = result.trace
    diagnosis = analyze(trace)
    json_path = output.with_suffix(".json")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        report = trace.to_dict()
        report["findings"] = [
            {
                "id": f.id, "severity": f.severity, "title": f.title, "summary": f.summary,
                "pid": f.pid, "evidence": f.evidence, "doc": f.doc,
                "culprits": [c.where for c in f.culprits],
            }
            for f in diagnosis.findings
        ]  # fmt: skip
        json_path.write_text(json.dumps(report, separators=(",", ":")), encoding="utf-8")
        output.write_text(
            render_html(trace, diagnosis, docs_base=docs_base(), json_name=json_path.name),
            encoding="utf-8",
        )
    except OSError as exc:
        raise click.ClickException(f"cannot write the report: {exc.strerror or exc}") from None
    print_summary(trace, diagnosis, console, str(output))
    if result.problem:
        raise click.ClickException(result.problem)
