"""``sluicegate fetch`` and ``sluicegate swarm``: thin click wrappers over the library.

Every bad input becomes one ``Error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sluicegate.cli.clitools import OneLineCommand, fail, parse_option
from sluicegate.client.fetch import ExitCode, FetchCounters, FetchResult, fetch
from sluicegate.client.sse_swarm import SSESwarmResult, sse_swarm
from sluicegate.client.swarm import SwarmResult, check_target, parse_mix, swarm
from sluicegate.errors import ConfigError
from sluicegate.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = ["fetch_command", "swarm_command"]

T = TypeVar("T")

FETCH_EPILOG = """\b
Exit codes:
  0  complete (and, with --verify, the digest matched or none was offered)
  1  unexpected internal error
  2  bad arguments (URL, rate, schedule, output path ...)
  3  HTTP error status (>= 300; redirects are not followed)
  4  incomplete transfer: connection closed early, stalled past --timeout,
     or stopped by the schedule; FILE.part is kept for --resume
  5  digest mismatch (Repr-Digest / Content-Digest / transfer ledger)
  6  connection error before a response (refused, unreachable, timeout)
  7  the output file could not be written
  130 interrupted (Ctrl-C); FILE.part is kept for --resume

\b
Schedule grammar: TIME:ACTION[,TIME:ACTION...], TIME from the first body byte
  1s:pause=19s    stop reading for 19 s       5s:rate=1M   change the rate
  10s:pause       stop reading for good       30s:stop     cut the connection
"""

SWARM_EPILOG = """\b
Mix grammar: KIND[:WEIGHT][,KIND[:WEIGHT]...]
  fast        read as fast as possible
  slow=RATE   read at RATE bytes/s (64K, 1M ...), like fetch --limit-rate
  stall       read the headers, then nothing until the run ends

\b
SSE mode (--sse): subscribers instead of downloads. Every event's data must
carry its number and publish time as JSON, {"n": 41, "published": <time.time()>, ...}
(sluicegate's own feeds do); the table shows events delivered, lost (numbers
skipped), duplicated, and publish-to-receipt latency. Stalled subscribers count
nothing. --reconnect brings a dropped subscriber back with Last-Event-ID, to the
next of URL and the --also URLs (other workers of the same feed).

\b
Exit codes: 0 the run finished (read the counts), 2 bad arguments.
"""


def _parse_headers(values: tuple[str, ...]) -> list[tuple[str, str]]:
    headers = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip() or any(c in name for c in " \t"):
            fail(f"--header: bad header {value!r}: expected 'Name: value'")
        headers.append((name.strip(), rest.strip()))
    return headers


class _ProgressBar:
    """A rich progress bar on stderr, refreshed at most 10 times a second."""

    def __init__(self, url: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task(url.rsplit("/", 1)[-1] or url, total=None)
        self.last = 0.0

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, counters: FetchCounters) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and not counters.paused:
            return
        self.last = now
        self.progress.update(
            self.task,
            completed=counters.offset + counters.body_bytes,
            total=counters.size,
            description="paused" if counters.paused else "fetching",
        )


def _summary_line(result: FetchResult) -> str:
    verified = ""
    if result.verified is not None:
        verified = f", verified ({result.digest_source})" if result.verified else ", MISMATCH"
    where = f" -> {result.output}" if result.output is not None and result.complete else ""
    return (
        f"{result.status} {format_size(result.bytes_received)} in "
        f"{format_duration(result.duration)} ({format_size(result.rate)}/s)"
        f"{verified}{where}"
    )


@click.command("fetch", cls=OneLineCommand, epilog=FETCH_EPILOG)
@click.argument("url")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (via FILE.part).")
@click.option("-r", "--limit-rate", metavar="RATE", help="Read at most RATE bytes/s: 64K, 10M.")
@click.option("--pause-after", metavar="DURATION", help="Pause this long into the body ...")
@click.option("--pause-for", metavar="DURATION", help="... for this long (e.g. 1s and 19s).")
@click.option(
    "--schedule", metavar="SPEC", help="Scripted behaviour, e.g. 1s:pause=19s,5s:rate=1M."
)
@click.option("-C", "--resume", is_flag=True, help="Continue FILE.part with Range/If-Range.")
@click.option("--verify", is_flag=True, help="Check SHA-256 against the server's digest.")
@click.option("--rcvbuf", metavar="SIZE", help="SO_RCVBUF (default: ~1/4 s at the rate).")
@click.option("--mss", metavar="SIZE", help="TCP MSS to announce (paced default 1448; 0: kernel).")
@click.option(
    "--timeout",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="Give up after this long without a byte (pauses excluded).",
)
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Extra request header (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar nor summary line.")
def fetch_command(
    url: str,
    output: str | None,
    limit_rate: str | None,
    pause_after: str | None,
    pause_for: str | None,
    schedule: str | None,
    resume: bool,
    verify: bool,
    rcvbuf: str | None,
    mss: str | None,
    timeout: str,
    headers: tuple[str, ...],
    as_json: bool,
    quiet: bool,
) -> None:
    """GET URL like a truly slow client: paced socket reads, pauses, resume, verify.

    Unlike curl --limit-rate, the socket itself is read slowly (small SO_RCVBUF,
    small paced reads), so the server feels TCP backpressure.
    """
    options: dict[str, Any] = {
        "output": output,
        "limit_rate": parse_option(parse_rate, limit_rate, "--limit-rate"),
        "pause_after": parse_option(parse_duration, pause_after, "--pause-after"),
        "pause_for": parse_option(parse_duration, pause_for, "--pause-for"),
        "schedule": schedule,
        "resume": resume,
        "verify": verify,
        "rcvbuf": parse_option(parse_size, rcvbuf, "--rcvbuf"),
        "mss": parse_option(parse_size, mss, "--mss"),
        "timeout": parse_option(parse_duration, timeout, "--timeout"),
        "headers": _parse_headers(headers),
    }
    show_bar = not (quiet or as_json) and sys.stderr.isatty()
    result = _one_line_errors(
        "fetch",
        "interrupted: any FILE.part is kept for --resume",
        lambda: asyncio.run(_run_fetch(url, options, show_bar)),
    )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    if result.exit_code != ExitCode.OK:
        click.echo(f"sluicegate fetch: {result.error}", err=True)
    elif not (quiet or as_json):
        click.echo(_summary_line(result), err=True)
    sys.exit(int(result.exit_code))


async def _run_fetch(url: str, options: dict[str, Any], show_bar: bool) -> FetchResult:
    if not show_bar:
        return await fetch(url, check=False, **options)
    with _ProgressBar(url) as bar:
        return await fetch(url, check=False, on_progress=bar.update, **options)


def _print_swarm(result: SwarmResult) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    table = Table(title=f"swarm {result.url}: {result.duration:.1f} s ({result.stopped_by})")
    for name in (
        "class",
        "clients",
        "requests",
        "completed",
        "incomplete",
        "errored",
        "interrupted",
        "bytes",
        "ttfb p50",
        "ttfb p99",
    ):
        table.add_column(name, justify="left" if name == "class" else "right")
    for c in result.classes:
        row = c.to_dict()
        table.add_row(
            c.label,
            str(c.clients),
            str(c.requests),
            str(c.completed),
            str(c.incomplete),
            str(c.errored),
            str(c.interrupted),
            format_size(c.bytes),
            ms(row["ttfb_p50"]),
            ms(row["ttfb_p99"]),
        )
    table.add_row(
        "all",
        str(sum(c.clients for c in result.classes)),
        str(result.requests),
        str(result.completed),
        str(result.incomplete),
        str(result.errored),
        str(result.interrupted),
        format_size(result.bytes),
        ms(result.ttfb(50)),
        ms(result.ttfb(99)),
        style="bold",
    )
    # Not a terminal (a pipe, a log): do not squeeze the table into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print(f"throughput {format_size(result.throughput)}/s")
    for c in result.classes:
        for message, count in c.errors.items():
            console.print(f"[red]{c.label}: {count} x {message}[/red]")


def _print_sse_swarm(result: SSESwarmResult) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    urls = ", ".join(result.urls)
    table = Table(title=f"SSE swarm {urls}: {result.duration:.1f} s")
    columns = ("class", "subscribers", "connected", "reconnects", "events", "lost", "duplicated")
    for name in (*columns, "latency p50", "latency p99", "latency max"):
        table.add_column(name, justify="left" if name == "class" else "right")
    total = result.all
    for c in [*result.classes, total]:
        row = c.to_dict()
        table.add_row(
            c.label,
            *(f"{row[name]:,}" for name in columns[1:]),
            ms(row["latency_p50"]),
            ms(row["latency_p99"]),
            ms(row["latency_max"]),
            style="bold" if c is total else None,
        )
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(table)
    for c in result.classes:
        for message, count in c.errors.items():
            console.print(f"[red]{c.label}: {count} x {message}[/red]")


def _one_line_errors(tool: str, interrupted: str, run: Callable[[], T]) -> T:
    """``run()``'s result; every way it can fail is one line on stderr and an exit.

    A bad setting exits 2 (``Error: ...``), an interrupt 130 (``interrupted``, the
    tool's own words), a bug 1 (``sluicegate TOOL: internal error: ...``): never a
    traceback.
    """
    try:
        return run()
    except ConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, never a traceback
        click.echo(f"sluicegate {tool}: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(int(ExitCode.UNEXPECTED))


def _run_swarm(run: Callable[[], Any], as_json: bool, show: Callable[[Any], None]) -> None:
    """Run a swarm (``run()`` gives its result), then print JSON or ``show`` it.

    Failures are one line each (:func:`_one_line_errors`).
    """
    result = _one_line_errors("swarm", "interrupted", run)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        show(result)


def _run_sse_swarm(urls: list[str], options: dict[str, Any]) -> None:
    """The --sse branch of ``swarm``: run, then print JSON or the table."""
    as_json = options.pop("as_json")
    _run_swarm(lambda: asyncio.run(sse_swarm(urls, **options)), as_json, _print_sse_swarm)


@click.command("swarm", cls=OneLineCommand, epilog=SWARM_EPILOG)
@click.argument("url")
@click.option(
    "-n",
    "--clients",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent clients.",
)
@click.option(
    "--mix",
    default="fast:1",
    show_default=True,
    metavar="SPEC",
    help="Behaviours and weights, e.g. fast:90,slow=64K:9,stall:1.",
)
@click.option(
    "-d",
    "--duration",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Stop after this long.",
)
@click.option(
    "--requests",
    type=click.IntRange(1, 10**9),
    default=None,
    help="Stop after this many requests in all (default: no limit).",
)
@click.option(
    "--timeout",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="Per-request stall timeout.",
)
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not loopback.")
@click.option("--sse", is_flag=True, help="Subscribe to an event stream instead (see below).")
@click.option("--reconnect", is_flag=True, help="SSE: come back with Last-Event-ID after a drop.")
@click.option(
    "--also",
    multiple=True,
    metavar="URL",
    help="SSE: another worker of the same feed; subscribers spread and fail over (repeatable).",
)
@click.option(
    "--cuts-per-second",
    type=click.FloatRange(min=0, max=10_000),
    default=0.0,
    help="SSE: drop this many random subscribers a second (to test --reconnect).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def swarm_command(
    url: str,
    clients: int,
    mix: str,
    duration: str,
    requests: int | None,
    timeout: str,
    allow_remote: bool,
    sse: bool,
    reconnect: bool,
    also: tuple[str, ...],
    cuts_per_second: float,
    as_json: bool,
) -> None:
    """Run many concurrent clients against URL (loopback only by default).

    The run stops by itself after --duration, or once --requests requests have
    finished; requests still running then are counted as interrupted. With --sse,
    URL is an event stream and the clients are subscribers.
    """
    entries = parse_option(parse_mix, mix, "--mix")
    seconds = parse_option(parse_duration, duration, "--duration")
    stall = parse_option(parse_duration, timeout, "--timeout")
    if not sse:
        for flag, given in (
            ("--reconnect", reconnect),
            ("--also", also),
            ("--cuts-per-second", cuts_per_second),
        ):
            if given:
                fail(f"{flag} needs --sse")
    else:
        if requests is not None:
            fail("--requests does not apply to --sse (subscriptions do not end)")
        _run_sse_swarm(
            [url, *also],
            {
                "clients": clients,
                "mix": entries,
                "duration": seconds,
                "reconnect": reconnect,
                "cuts_per_second": cuts_per_second,
                "allow_remote": allow_remote,
                "as_json": as_json,
            },
        )
        return

    def run() -> Any:
        check_target(url, allow_remote)
        return asyncio.run(
            swarm(
                url,
                clients=clients,
                mix=entries,
                duration=seconds,
                requests=requests,
                timeout=stall,
                allow_remote=allow_remote,
            )
        )

    _run_swarm(run, as_json, _print_swarm)
