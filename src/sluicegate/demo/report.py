"""Turn the demo's runs into figures: a table, JSON, one HTML overlay, a PNG.

:func:`summarize` is pure (a trace and the client's JSON in, a :class:`RunSummary`
out): the server's idle RSS is the median of the last half second before the load,
its peak is the highest sample after the load started, and the kernel send queue is
the peak of the probe's (or outside sampler's) ``send_queue``::

    >>> from sluicegate.doctor.samples import Event, Sample, Trace
    >>> from sluicegate.demo.plan import Case
    >>> t = Trace(samples=[Sample(1, float(i), rss=(100 + 10 * (i > 2)) << 20)
    ...                    for i in range(6)], events=[Event(2.5, "load-start")])
    >>> summarize(Case("generator", 1, 1, 1), t, {}).peak_above_idle >> 20
    10
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from sluicegate.cli.browser import find_chromium, headless_args
from sluicegate.demo.plan import ARTICLE, Case
from sluicegate.demo.runner import Recv
from sluicegate.doctor.analysis import analyze
from sluicegate.doctor.report import render_html
from sluicegate.doctor.samples import Trace

__all__ = [
    "RunSummary",
    "ServerMemory",
    "format_recvs",
    "pause_gap",
    "print_table",
    "result_text",
    "server_memory",
    "summarize",
    "write_chart_png",
    "write_doctor_report",
    "write_figures",
    "write_html",
]

MiB = 1024 * 1024
#: The doctor's diagnosis pages, in the repository.
DIAGNOSES_DIR = Path(__file__).resolve().parents[3] / "docs" / "diagnoses"
#: Most points kept per curve in the JSON and the overlay.
CURVE_POINTS = 600
_COLOURS = {
    "ignore-backpressure": "#d62728",
    "wait": "#1f77b4",
    "pull-source": "#9467bd",
    "generator": "#2ca02c",
    "leaky": "#ff7f0e",
}


@dataclass(slots=True)
class RunSummary:
    """One run's figures, as the table and ``figures.json`` show them."""

    key: str
    scenario: str
    server: str
    rate_mib: int
    chunk: int
    count: int
    client_rate: int | None
    window: float | None
    idle_rss: int = 0
    peak_rss: int = 0
    peak_above_idle: int = 0
    send_queue_peak: int | None = None
    bytes: int = 0
    expected_bytes: int = 0
    duration: float | None = None
    ttfb: float | None = None
    complete: bool = False
    stopped_by_window: bool = False
    error: str | None = None
    produced: int | None = None
    dropped: int = 0
    backlog_peak: int = 0
    server_stopped: str | None = None
    #: for the pausing case: the longest time the server made nothing, seconds
    pause_gap: float | None = None
    pause_for: float | None = None
    problem: str | None = None
    article: str | None = None
    #: seconds since the load started, and MiB above idle / MiB in the send queue
    curve_t: list[float] = field(default_factory=list)
    curve_rss: list[float] = field(default_factory=list)
    curve_sq_t: list[float] = field(default_factory=list)
    curve_sq: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _decimate(
    points: list[tuple[float, float]], limit: int = CURVE_POINTS
) -> list[tuple[float, float]]:
    """At most ``limit`` points, each bucket kept by its peak (a spike must not vanish)."""
    if len(points) <= limit:
        return points
    step = len(points) / limit
    out = []
    for b in range(limit):
        bucket = points[int(b * step) : max(int((b + 1) * step), int(b * step) + 1)]
        out.append(max(bucket, key=lambda p: p[1]))
    return out


def pause_gap(times: Sequence[float]) -> float | None:
    """The longest pause between two chunks the server made (None for fewer than two).

    >>> pause_gap([0.05, 0.1, 0.15, 4.3, 4.35])
    4.15
    """
    if len(times) < 2:
        return None
    return round(max(b - a for a, b in itertools.pairwise(times)), 3)


@dataclass(slots=True)
class ServerMemory:
    """The server's memory in one run: idle and peak RSS, and the curves from the load start."""

    idle: int = 0
    peak: int = 0
    #: seconds since the load started, and MiB above idle / MiB in the send queue
    curve_t: list[float] = field(default_factory=list)
    curve_rss: list[float] = field(default_factory=list)
    sq_peak: int | None = None
    sq_t: list[float] = field(default_factory=list)
    sq: list[float] = field(default_factory=list)

    @property
    def peak_above_idle(self) -> int:
        """Peak RSS minus idle RSS (never below 0)."""
        return max(0, self.peak - self.idle) if self.peak else 0


def server_memory(trace: Trace) -> ServerMemory:
    """Read the server's samples of ``trace`` (see the module docstring for how)."""
    m = ServerMemory()
    by_pid = trace.by_pid()
    pid = trace.server_pid if trace.server_pid in by_pid else None
    if pid is None and by_pid:
        pid = max(by_pid, key=lambda p: len(by_pid[p]))
    samples = by_pid.get(pid, []) if pid is not None else []
    start_event = trace.event("load-start")
    load_start = start_event.t if start_event else (samples[0].t if samples else 0.0)
    before = [x.rss for x in samples if x.rss and load_start - 0.5 <= x.t < load_start]
    if not before:
        before = [x.rss for x in samples[:5] if x.rss]
    if before:
        m.idle = int(statistics.median(before))
    during = [x for x in samples if x.t >= load_start]
    rss = [(x.t - load_start, x.rss) for x in during if x.rss]
    if rss:
        m.peak = max(r for _, r in rss)
        curve = _decimate([(t, (r - m.idle) / MiB) for t, r in rss])
        m.curve_t = [round(t, 3) for t, _ in curve]
        m.curve_rss = [round(v, 2) for _, v in curve]
    sq = [(x.t - load_start, x.send_queue) for x in during if x.send_queue is not None]
    if sq:
        m.sq_peak = max(q for _, q in sq)
        curve = _decimate([(t, q / MiB) for t, q in sq])
        m.sq_t = [round(t, 3) for t, _ in curve]
        m.sq = [round(v, 3) for _, v in curve]
    return m


def summarize(
    case: Case, trace: Trace, load: dict[str, Any], problem: str | None = None
) -> RunSummary:
    """The figures of one run (see the module docstring for how they are read)."""
    s = RunSummary(
        key=case.key,
        scenario=case.scenario,
        server=case.server,
        rate_mib=case.rate_mib,
        chunk=case.chunk,
        count=case.count,
        client_rate=case.client_rate,
        window=case.window,
        expected_bytes=case.total,
        pause_for=case.pause_for,
        problem=problem,
        article=None if case.pause_for else ARTICLE.get((case.scenario, case.rate_mib)),
    )
    memory = server_memory(trace)
    s.idle_rss, s.peak_rss, s.peak_above_idle = memory.idle, memory.peak, memory.peak_above_idle
    s.curve_t, s.curve_rss = memory.curve_t, memory.curve_rss
    s.send_queue_peak, s.curve_sq_t, s.curve_sq = memory.sq_peak, memory.sq_t, memory.sq
    fetched = load.get("fetch") or {}
    s.bytes = int(fetched.get("bytes") or 0)
    s.duration = fetched.get("duration")
    s.ttfb = fetched.get("ttfb")
    s.complete = bool(fetched.get("complete"))
    s.stopped_by_window = bool(fetched.get("stopped_by_window"))
    s.error = fetched.get("error")
    server = load.get("server") or {}
    if server:
        s.produced = int(server.get("produced") or 0)
        s.dropped = int(server.get("dropped") or 0)
        s.backlog_peak = int(server.get("backlog_peak") or 0)
        s.server_stopped = server.get("stopped")
        if case.pause_for:
            s.pause_gap = pause_gap(server.get("times") or [])
    return s


def result_text(s: RunSummary) -> str:
    """What happened to the transfer, in a few words.

    >>> result_text(RunSummary("k", "leaky", "python", 20, 1, 1, 1, None, complete=True,
    ...                        bytes=30, produced=100, dropped=70))
    '70% dropped'
    """
    if s.problem:
        return f"problem: {s.problem}"
    if s.server_stopped and "safety cap" in s.server_stopped:
        return "cut by the safety cap"
    if s.stopped_by_window:
        return f"client left at {s.window:g} s"
    if s.complete:
        if s.dropped and s.produced:
            return f"{100 * s.dropped / s.produced:.0f}% dropped"
        return "complete"
    if s.error:
        return s.error if s.error.startswith("incomplete") else f"incomplete: {s.error}"
    return "incomplete"


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / MiB:,.0f} MiB"


def _secs(x: float | None) -> str:
    return "—" if x is None else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s")


def print_table(summaries: Sequence[RunSummary], console: Console, *, title: str) -> None:
    """The main table: one row per run, the article's Node figure beside ours."""
    rows = [s for s in summaries if s.pause_for is None]
    several = len({s.server for s in rows}) > 1
    table = Table(title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("scenario", no_wrap=True)
    if several:
        table.add_column("server")
    table.add_column("producer", justify="right")
    table.add_column("peak RSS\nabove idle", justify="right")
    table.add_column("kernel\nsend queue", justify="right")
    table.add_column("bytes\nread", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("TTFB", justify="right")
    table.add_column("result", no_wrap=True)
    table.add_column("article, Node\n(20 chunks)")
    last_rate = None
    for s in rows:
        if last_rate is not None and s.rate_mib != last_rate:
            table.add_section()
        last_rate = s.rate_mib
        name = f"[red]{s.scenario}[/] ✗" if s.scenario == "ignore-backpressure" else s.scenario
        cells = [name, *([s.server] if several else [])]
        cells += [
            f"{s.rate_mib} MiB/s",
            f"[bold]{_mib(s.peak_above_idle)}[/]",
            _mib(s.send_queue_peak),
            _mib(s.bytes),
            _secs(s.duration),
            _secs(s.ttfb),
            result_text(s),
            s.article or "",
        ]
        table.add_row(*cells)
    console.print(table)
    console.print(
        "✗ the anti-pattern: a producer task filling an unbounded asyncio.Queue. "
        "Client: 10 MiB/s, small receive buffer."
    )
    for s in summaries:
        if s.pause_for is None:
            continue
        gap = "—" if s.pause_gap is None else f"{s.pause_gap:.1f} s"
        console.print(
            f"06 pausing ({s.server}): the client stopped reading for {s.pause_for:g} s; "
            f"the server made nothing for {gap} (longest gap between chunks); "
            f"peak RSS above idle {_mib(s.peak_above_idle)}; {result_text(s)}."
        )


def format_recvs(recvs: Sequence[Recv]) -> str:
    """``curl --trace``'s view of a response: each recv()'s body bytes as hex and text.

    >>> print(format_recvs([Recv(b"", b"5\\r\\nHello\\r\\n")]))
    <= Recv data, 10 bytes (0xa)
    0000: 35 0d 0a 48 65 6c 6c 6f 0d 0a                   5..Hello..
    """
    lines = []
    for r in recvs:
        if r.header:
            lines.append(f"<= Recv header, {len(r.header)} bytes (0x{len(r.header):x})")
        if not r.data:
            continue
        lines.append(f"<= Recv data, {len(r.data)} bytes (0x{len(r.data):x})")
        for off in range(0, len(r.data), 16):
            row = r.data[off : off + 16]
            hexes = " ".join(f"{b:02x}" for b in row)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
            lines.append(f"{off:04x}: {hexes:<48} {text}")
    return "\n".join(lines)


# -- files ------------------------------------------------------------------------------------


def write_doctor_report(trace: Trace, directory: Path, plotly_src: str | None) -> Path:
    """The doctor's own report of one run (``report.html`` + ``report.json``).

    ``plotly_src``: a relative path to a shared ``plotly.min.js`` instead of inlining
    the 3.5 MB bundle in every run's page; None inlines it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(trace.to_json(), encoding="utf-8")
    diagnosis = analyze(trace)
    # The diagnoses' pages live in the repository's docs/; link them relatively.
    docs = os.path.relpath(DIAGNOSES_DIR, directory.resolve())
    page = render_html(trace, diagnosis, docs_base=docs, plotly_js="")
    if plotly_src is not None and page.count("<script></script>") == 1:
        page = page.replace("<script></script>", f'<script src="{plotly_src}"></script>')
    else:
        page = render_html(trace, diagnosis, docs_base=docs)
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_figures(path: Path, summaries: Sequence[RunSummary], extra: dict[str, Any]) -> None:
    """``figures.json``: every run's figures and curves, and the demo's other results."""
    doc = {"runs": [s.to_dict() for s in summaries], **extra}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def _figure(summaries: Sequence[RunSummary], *, with_queues: bool) -> Any:
    from plotly.subplots import make_subplots

    rates = sorted({s.rate_mib for s in summaries if s.pause_for is None})
    rows = 2 if with_queues else 1
    titles = [f"Server RSS above idle (MiB), producer {r} MiB/s" for r in rates]
    if with_queues:
        titles += [f"Kernel send queue (MiB), producer {r} MiB/s" for r in rates]
    fig = make_subplots(
        rows=rows, cols=max(1, len(rates)), subplot_titles=titles, vertical_spacing=0.12
    )
    for col, rate in enumerate(rates, 1):
        for s in summaries:
            if s.rate_mib != rate or s.pause_for is not None:
                continue
            colour = _COLOURS.get(s.scenario, "#555")
            dash = "dash" if s.server == "node" else "solid"
            name = s.scenario if s.server == "python" else f"{s.scenario} (node)"
            fig.add_scatter(
                x=s.curve_t,
                y=s.curve_rss,
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                line={"color": colour, "dash": dash, "width": 2},
                mode="lines",
                row=1,
                col=col,
            )
            if with_queues:
                fig.add_scatter(
                    x=s.curve_sq_t,
                    y=s.curve_sq,
                    name=name,
                    legendgroup=name,
                    showlegend=False,
                    line={"color": colour, "dash": dash, "width": 1.5},
                    mode="lines",
                    row=2,
                    col=col,
                )
        fig.update_xaxes(title_text="seconds since the load started", row=rows, col=col)
    fig.update_layout(
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.15 if not with_queues else -0.08},
        font={"size": 13},
    )
    return fig


def _table_html(summaries: Sequence[RunSummary]) -> str:
    head = (
        "<tr><th>scenario</th><th>server</th><th>producer</th><th>peak RSS above idle</th>"
        "<th>kernel send queue</th><th>bytes read</th><th>duration</th><th>TTFB</th>"
        "<th>result</th><th>article (Node)</th><th>doctor</th></tr>"
    )
    rows = []
    for s in summaries:
        producer = f"{s.rate_mib} MiB/s" + (f", pause {s.pause_for:g} s" if s.pause_for else "")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(v)}</td>"
                for v in (
                    s.scenario,
                    s.server,
                    producer,
                    _mib(s.peak_above_idle),
                    _mib(s.send_queue_peak),
                    _mib(s.bytes),
                    _secs(s.duration),
                    _secs(s.ttfb),
                    result_text(s),
                    s.article or "",
                )
            )
            + f'<td><a href="runs/{html.escape(s.key)}/report.html">report</a></td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:14px;margin:12px 0}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left} pre{background:#f6f6f6;padding:10px;overflow:auto}
.note{color:#555;max-width:60em}"""


def write_html(
    path: Path,
    summaries: Sequence[RunSummary],
    *,
    title: str,
    notes: Sequence[str] = (),
    hello: str = "",
    extra: str = "",
) -> None:
    """One offline page: the overlay of every run's memory and send queue, the table,
    ``extra`` HTML (the live feed's section), the hello trace, links to each run's
    doctor report."""
    fig = _figure(summaries, with_queues=True)
    fig.update_layout(height=800)
    chart = fig.to_html(include_plotlyjs=True, full_html=False, config={"displaylogo": False})
    note_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>{note_html}
{chart}
<h2>Figures</h2>{_table_html(summaries)}
<p class="note">Raw figures and curves: <a href="figures.json">figures.json</a>.</p>
{extra}
<h2>01 · two writes, as curl --trace shows them</h2><pre>{html.escape(hello)}</pre>
</body></html>"""
    path.write_text(page, encoding="utf-8")


def write_chart_png(path: Path, summaries: Sequence[RunSummary], *, title: str) -> str | None:
    """Render the memory overlay to ``path`` with headless Chromium; return why not, or None."""
    browser = find_chromium()
    if browser is None:
        return "no Chromium on PATH: skipped the PNG"
    fig = _figure(summaries, with_queues=False)
    fig.update_layout(title={"text": title, "x": 0.01}, width=1200, height=680, margin={"t": 90})
    page = fig.to_html(include_plotlyjs=True, full_html=True, config={"staticPlot": True})
    page = page.replace("<body>", "<body style='margin:0'>", 1)
    with tempfile.TemporaryDirectory(prefix="sluicegate-png-") as tmp:
        src = Path(tmp) / "chart.html"
        src.write_text(page, encoding="utf-8")
        out = Path(tmp) / "chart.png"
        cmd = [
            *headless_args(browser, f"{tmp}/profile"),
            "--hide-scrollbars",
            "--window-size=1200,700",
            f"--screenshot={out}",
            src.as_uri(),
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            # Its own session: the browser's helper processes go with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            return "Chromium took more than 60 s: skipped the PNG"
        if not out.is_file():
            return "Chromium wrote no screenshot: skipped the PNG"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, path)
    return None
