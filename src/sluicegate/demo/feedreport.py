"""The live-feed runs in figures: one summary per policy, a table, a memory chart.

:func:`summarize_feed` is pure: the doctor's trace (the server's memory, read as
:func:`~sluicegate.demo.report.server_memory` reads it for every demo run) and the
load's JSON (:mod:`sluicegate.demo.feedload`: what every class of subscribers got,
and the server's ``/feed/stats``) in, a :class:`FeedSummary` out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from sluicegate.demo.plan import FeedCase
from sluicegate.demo.report import server_memory
from sluicegate.doctor.samples import Trace

__all__ = ["FeedSummary", "feed_html", "print_feed_table", "summarize_feed"]

MiB = 1024 * 1024
_COLOURS = {"wait": "#1f77b4", "drop_oldest": "#ff7f0e", "disconnect": "#2ca02c"}
_WHAT = {
    "wait": "the slowest holds everyone back",
    "drop_oldest": "slow ones lose old events",
    "disconnect": "slow ones are cut, resume later",
}


@dataclass(slots=True)
class FeedSummary:
    """One policy's run, as the table and ``figures.json`` show it."""

    key: str
    policy: str
    subscribers: int
    slow: int
    events: int
    idle_rss: int = 0
    peak_above_idle: int = 0
    published: int = 0
    #: how late the publisher got behind its schedule, seconds
    behind: float = 0.0
    fast_delivered: int = 0
    fast_offered: int = 0
    fast_p50: float | None = None
    fast_p99: float | None = None
    slow_delivered: int = 0
    slow_offered: int = 0
    slow_reconnects: int = 0
    dropped: int = 0
    cut: int = 0
    problem: str | None = None
    curve_t: list[float] = field(default_factory=list)
    curve_rss: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def summarize_feed(
    case: FeedCase, trace: Trace, load: dict[str, Any], problem: str | None = None
) -> FeedSummary:
    """The figures of one live-feed run.

    >>> s = summarize_feed(FeedCase("wait"), Trace(), {}, "no samples")
    >>> s.key, s.events, s.problem
    ('python-feed-wait', 40, 'no samples')
    """
    memory = server_memory(trace)
    s = FeedSummary(
        case.key,
        case.policy,
        case.subscribers,
        case.slow,
        case.events,
        idle_rss=memory.idle,
        peak_above_idle=memory.peak_above_idle,
        problem=problem,
        curve_t=memory.curve_t,
        curve_rss=memory.curve_rss,
    )
    server = load.get("server") or {}
    s.published = int(server.get("published") or 0)
    s.behind = float(server.get("behind") or 0.0)
    s.dropped = int(server.get("dropped") or 0)
    s.cut = int(server.get("cut") or 0)
    for c in (load.get("swarm") or {}).get("classes", []):
        offered = s.published * int(c["subscribers"])
        if c["label"] == "fast":
            s.fast_delivered, s.fast_offered = int(c["events"]), offered
            s.fast_p50, s.fast_p99 = c["latency_p50"], c["latency_p99"]
        else:
            s.slow_delivered, s.slow_offered = int(c["events"]), offered
            s.slow_reconnects = int(c["reconnects"])
    return s


def _ms(x: float | None) -> str:
    return "—" if x is None else (f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s")


def _share(got: int, offered: int) -> str:
    return "—" if not offered else f"{got:,} / {offered:,} ({100 * got / offered:.0f} %)"


def _rows(s: FeedSummary) -> list[str]:
    if s.problem:
        return [s.policy, "—", "—", "—", "—", "—", f"problem: {s.problem}"]
    published = f"{s.published} of {s.events}" + (
        f", {s.behind:.1f} s late" if s.behind >= 1 else ""
    )
    slow = _share(s.slow_delivered, s.slow_offered)
    extra = [f"{s.dropped:,} dropped"] if s.dropped else []
    extra += [f"{s.cut} cut, {s.slow_reconnects} resumed"] if s.cut else []
    return [
        s.policy,
        published,
        f"{s.peak_above_idle / MiB:,.1f} MiB",
        _share(s.fast_delivered, s.fast_offered),
        f"{_ms(s.fast_p50)} / {_ms(s.fast_p99)}",
        slow + (f" ({', '.join(extra)})" if extra else ""),
        _WHAT.get(s.policy, ""),
    ]


_HEAD = (
    "policy",
    "events published",
    "peak RSS above idle",
    "fast: delivered",
    "fast: latency p50 / p99",
    "slow: delivered",
    "what happens",
)


def print_feed_table(summaries: Sequence[FeedSummary], console: Console, *, title: str) -> None:
    """The live-feed table: one row per policy."""
    table = Table(title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD)
    for name in _HEAD:
        table.add_column(name, justify="left" if name in ("policy", "what happens") else "right")
    for s in summaries:
        table.add_row(*_rows(s))
    console.print(table)


def feed_html(summaries: Sequence[FeedSummary], *, title: str, note: str) -> str:
    """A section for ``index.html``: the memory chart of every policy and the table."""
    if not summaries:
        return ""
    from plotly.graph_objects import Figure

    fig = Figure()
    for s in summaries:
        fig.add_scatter(
            x=s.curve_t,
            y=s.curve_rss,
            name=s.policy,
            mode="lines",
            line={"color": _COLOURS.get(s.policy, "#555"), "width": 2},
        )
    fig.update_layout(
        template="plotly_white",
        height=420,
        title={"text": "Server RSS above idle (MiB), live feed", "x": 0.01},
        xaxis_title="seconds since the load started (subscribers connect, then 4 s of events)",
        margin={"l": 50, "r": 20, "t": 50, "b": 50},
    )
    chart = fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*_HEAD, "doctor"))
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(v)}</td>" for v in _rows(s))
        + f'<td><a href="runs/{html.escape(s.key)}/report.html">report</a></td></tr>'
        for s in summaries
    )
    return (
        f"<h2>{html.escape(title)}</h2><p class='note'>{html.escape(note)}</p>{chart}"
        f"<table><tr>{head}</tr>{rows}</table>"
    )
