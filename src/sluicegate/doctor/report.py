"""Render a doctor run as one self-contained HTML page, and as a terminal summary.

The page works offline: plotly.js is inlined, the figure's data is embedded. It shows
the diagnosis first (worst finding first, each with its evidence, the code named from
sampled stacks, a recommendation and a link to its docs page), then one figure of
stacked charts that share a single time axis, so zoom, hover and the spike cursor move
together on every chart. Charts a finding points at are marked ``⚠`` on a red tint;
the load window is shaded blue.

:func:`figure` and :func:`render_html` are pure (trace + diagnosis in, data out)::

    >>> from sluicegate.doctor.analysis import analyze
    >>> from sluicegate.doctor.samples import Sample, Trace
    >>> trace = Trace(samples=[Sample(pid=7, t=float(i), rss=1 << 20) for i in range(3)])
    >>> "<html" in render_html(trace, analyze(trace), plotly_js="")
    True
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from sluicegate.doctor.analysis import CHARTS, TCP_PAGE, Diagnosis, Finding, MiB
from sluicegate.doctor.samples import Sample, Trace

#: Most points drawn per line; longer series keep the peak of each bucket.
MAX_POINTS = 4000

_TITLES = {
    "cpu": "CPU (% of one core)",
    "memory": "RSS (MiB)",
    "loop": "Event-loop delay (ms)",
    "gc": "GC pause (ms per sample)",
    "tasks": "Tasks · threads",
    "fds": "FDs · connections",
    "sockets": "Kernel send queue (MiB)",
    "streams": "sluicegate streams",
}
_SEVERITY_COLOUR = {"critical": "#c0392b", "warning": "#d68910", "info": "#2471a3"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")

Getter = Callable[[Sample], float | None]


def _decimate(
    xs: list[float], ys: list[float], limit: int = MAX_POINTS
) -> tuple[list[float], list[float]]:
    """Keep at most ``limit`` points, each bucket represented by its peak (spikes matter)."""
    if len(xs) <= limit:
        return xs, ys
    step = len(xs) / limit
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(limit):
        lo, hi = int(b * step), max(int((b + 1) * step), int(b * step) + 1)
        i = max(range(lo, min(hi, len(ys))), key=ys.__getitem__)
        out_x.append(xs[i])
        out_y.append(ys[i])
    return out_x, out_y


def _series(samples: Sequence[Sample], t0: float, get: Getter) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for s in samples:
        v = get(s)
        if v is not None:
            xs.append(round(s.t - t0, 4))
            ys.append(round(float(v), 4))
    return _decimate(xs, ys)


def _pid_label(trace: Trace, pid: int) -> str:
    info = trace.processes.get(pid)
    if info is None or not info.argv:
        return f"pid {pid}"
    words = [a.rsplit("/", 1)[-1] for a in info.argv[:4] if not a.startswith("-")]
    name = next((w for w in words if not w.startswith("python")), words[0] if words else "")
    return f"pid {pid} {name}"[:40]


def _lines(trace: Trace) -> dict[str, list[tuple[str, Getter, str]]]:
    """Per chart: (label suffix, getter, dash) of each line drawn per process."""

    def mib(get: Callable[[Sample], float | int | None]) -> Getter:
        return lambda s: None if (v := get(s)) is None else v / MiB

    lines: dict[str, list[tuple[str, Getter, str]]] = {
        "cpu": [("", lambda s: None if s.cpu is None else s.cpu * 100.0, "solid")],
        "memory": [("", mib(lambda s: s.rss), "solid")],
        "loop": [("", lambda s: s.loop_delay_ms, "solid")],
        # zeros drawn too: GC pauses are rare spikes, and a line between two would lie
        "gc": [("", lambda s: s.gc_total_ms, "solid")],
        "tasks": [
            (" tasks", lambda s: None if s.tasks is None else float(s.tasks), "solid"),
            (" threads", lambda s: None if s.threads is None else float(s.threads), "dot"),
        ],
        "fds": [
            (" fds", lambda s: None if s.fds is None else float(s.fds), "solid"),
            (" conns", lambda s: None if s.connections is None else float(s.connections), "dot"),
        ],
        "sockets": [(" send", mib(lambda s: s.send_queue), "solid")],
    }
    if any(s.streams for s in trace.samples):
        lines["streams"] = [
            (" active", lambda s: s.stream("active_streams"), "solid"),
            (" lingering", lambda s: s.stream("lingering_producers"), "dash"),
            (" buffered MiB", mib(lambda s: s.stream("bytes_buffered")), "dot"),
        ]
    if any(s.stream("events_subscribers") is not None for s in trace.samples):
        lines["streams"] += [
            (" subscribers", lambda s: s.stream("events_subscribers"), "solid"),
            (" events dropped", lambda s: s.stream("events_dropped"), "dash"),
            (" subscribers cut", lambda s: s.stream("events_cut"), "dot"),
        ]
    return lines


def figure(trace: Trace, diagnosis: Diagnosis) -> dict[str, Any]:
    """The plotly figure (plain dicts): stacked charts on one shared time axis."""
    t0 = trace.start
    groups = trace.by_pid()
    lines = _lines(trace)
    # Series first: a chart with nothing to draw (no GC at all, no loop) is left out.
    series = {
        chart: [
            (pid, suffix, dash, _series(samples, t0, get))
            for pid, samples in groups.items()
            for suffix, get, dash in lines[chart]
        ]
        for chart in lines
    }
    charts = [c for c in CHARTS if c in series and any(xy[0] for *_, xy in series[c])]
    if not charts:
        return {"data": [], "layout": {}}
    flagged = diagnosis.flagged_charts
    gap = 0.025
    height = (1.0 - gap * (len(charts) - 1)) / len(charts)
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "height": 190 * len(charts) + 120,
        "margin": {"l": 70, "r": 30, "t": 40, "b": 50},
        "hovermode": "x unified",
        "hoversubplots": "axis",
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "xaxis": {
            "title": {"text": "seconds since start"},
            "showspikes": True,
            "spikemode": "across",
            "spikesnap": "cursor",
            "spikethickness": 1,
            "spikedash": "solid",
            "spikecolor": "#555",
            "anchor": f"y{len(charts) if len(charts) > 1 else ''}",
        },
        "shapes": [],
        "annotations": [],
        "plot_bgcolor": "#fbfbfb",
    }
    for row, chart in enumerate(charts):
        axis = "y" if row == 0 else f"y{row + 1}"
        top = 1.0 - row * (height + gap)
        domain = [max(0.0, top - height), top]
        mark = chart in flagged
        layout["yaxis" if row == 0 else f"yaxis{row + 1}"] = {
            "domain": domain,
            "title": {
                "text": ("⚠ " if mark else "") + _TITLES[chart],
                "font": {"size": 11, "color": "#c0392b" if mark else "#333"},
            },
            "rangemode": "tozero",
            "zeroline": False,
        }
        if mark:
            layout["shapes"].append(
                {
                    "type": "rect", "xref": "paper", "yref": "paper", "x0": 0, "x1": 1,
                    "y0": domain[0], "y1": domain[1], "fillcolor": "rgba(192,57,43,0.07)",
                    "line": {"width": 1, "color": "rgba(192,57,43,0.5)"}, "layer": "below",
                }
            )  # fmt: skip
        colours = {pid: _PALETTE[n % len(_PALETTE)] for n, pid in enumerate(groups)}
        for pid, suffix, dash, (xs, ys) in series[chart]:
            colour = colours[pid]
            if xs:
                data.append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": xs,
                        "y": ys,
                        "xaxis": "x",
                        "yaxis": axis,
                        "name": _pid_label(trace, pid) + suffix,
                        "legendgroup": str(pid),
                        "showlegend": row == 0,
                        "line": {"color": colour, "width": 1.3, "dash": dash},
                        "connectgaps": True,
                    }
                )
        if chart == "sockets":
            xs, ys = _series(
                trace.samples, t0,
                lambda s: None if s.tcp_mem_pages is None else s.tcp_mem_pages * TCP_PAGE / MiB,
            )  # fmt: skip
            if xs:
                data.append(
                    {
                        "type": "scatter", "mode": "lines", "x": xs, "y": ys, "xaxis": "x",
                        "yaxis": axis, "name": "all TCP sockets (system)", "showlegend": True,
                        "line": {"color": "#7f7f7f", "width": 1, "dash": "dot"},
                    }
                )  # fmt: skip
        if chart == "loop":
            for limit in (10.0, 100.0):
                layout["shapes"].append(
                    {
                        "type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": axis,
                        "y0": limit, "y1": limit,
                        "line": {"color": "#c0392b", "width": 1, "dash": "dot"},
                    }
                )  # fmt: skip
    window = diagnosis.window
    if window is not None:
        layout["shapes"].append(
            {
                "type": "rect", "xref": "x", "yref": "paper", "y0": 0, "y1": 1,
                "x0": round(window.start - t0, 3), "x1": round(window.end - t0, 3),
                "fillcolor": "rgba(36,113,163,0.08)", "line": {"width": 0}, "layer": "below",
            }
        )  # fmt: skip
        layout["annotations"].append(
            {
                "xref": "x", "yref": "paper", "x": round(window.start - t0, 3), "y": 1.0,
                "text": f"load ({window.source})", "showarrow": False, "xanchor": "left",
                "yanchor": "bottom", "font": {"size": 10, "color": "#2471a3"},
            }
        )  # fmt: skip
    return {"data": data, "layout": layout}


#: Evidence values that are byte counts, shown in MiB.
_BYTE_KEYS = frozenset(
    {
        "rss_before", "rss_peak", "rise_bytes", "rise_with_slow_readers",
        "sluicegate_buffered_peak", "send_queue_peak", "largest_queue", "tcp_mem_peak",
        "rss_at_peak", "rss_idle_before", "rss_idle_after",
    }
)  # fmt: skip


def _evidence_value(key: str, value: float | int | str) -> str:
    if key in _BYTE_KEYS and isinstance(value, int | float):
        return f"{value / MiB:.1f} MiB"
    return str(value)


def _finding_html(f: Finding, docs_base: str) -> str:
    colour = _SEVERITY_COLOUR[f.severity]
    evidence = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_evidence_value(k, v))}</td></tr>"
        for k, v in f.evidence.items()
    )
    culprits = ""
    if f.culprits:
        items = "".join(
            f"<li><code>{html.escape(c.where)}</code> — on the stack {c.hits}×, "
            f"blocked up to {c.max_blocked_ms:.0f} ms</li>"
            for c in f.culprits
        )
        culprits = f"<p>Blocking code (sampled stacks):</p><ul>{items}</ul>"
    pid = f" · pid {f.pid}" if f.pid is not None else ""
    href = html.escape(docs_base.rstrip("/") + f"/{f.id}.md")
    return (
        f'<section class="finding" id="finding-{html.escape(f.id)}" '
        f'style="border-left-color:{colour}">'
        f'<h3><span class="sev" style="background:{colour}">{f.severity}</span> '
        f"{html.escape(f.title)} <small><code>{html.escape(f.id)}</code>{pid}</small></h3>"
        f"<p>{html.escape(f.summary)}</p>{culprits}"
        f'<p class="rec"><b>Recommendation:</b> {html.escape(f.recommendation)} '
        f'<a href="{href}">What this means and how to fix it →</a></p>'
        f'<details><summary>Evidence</summary><table class="ev">{evidence}</table></details>'
        f"</section>"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#222;background:#fff}
header{padding:16px 24px;background:#1b2631;color:#eee}
header h1{margin:0 0 4px;font-size:20px} header code{color:#aed6f1}
main{padding:8px 24px 32px;max-width:1400px}
.verdict{font-size:16px;margin:14px 0}
.finding{border-left:5px solid #999;padding:6px 14px;margin:10px 0;background:#f8f9f9}
.finding h3{margin:4px 0;font-size:15px} .finding small{color:#666;font-weight:normal}
.sev{color:#fff;border-radius:3px;padding:1px 6px;font-size:11px;text-transform:uppercase}
.rec{margin:6px 0} table.ev th{text-align:left;padding-right:12px;font-weight:normal;color:#555}
table.procs{border-collapse:collapse;margin:8px 0} table.procs td,table.procs th{padding:2px 10px;
border-bottom:1px solid #ddd;text-align:right} #chart{width:100%}
"""


def render_html(
    trace: Trace,
    diagnosis: Diagnosis,
    *,
    docs_base: str = "docs/diagnoses",
    json_name: str = "report.json",
    plotly_js: str | None = None,
) -> str:
    """The whole report page. ``plotly_js`` defaults to the inlined plotly bundle."""
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    fig = json.dumps(figure(trace, diagnosis), separators=(",", ":")).replace("</", "<\\/")
    window = diagnosis.window
    span = (
        f"load window {window.start - trace.start:.1f}–{window.end - trace.start:.1f} s "
        f"(from {window.source})"
        if window
        else "no samples"
    )
    if not diagnosis.findings:
        verdict = "✅ No problems found." if trace.samples else "⚠ No samples were recorded."
    elif diagnosis.healthy:
        verdict = "✅ Nothing serious; notes below."
    else:
        bad = sum(1 for f in diagnosis.findings if f.severity != "info")
        verdict = f"⚠ {bad} problem{'s' if bad != 1 else ''} found."
    findings = "".join(_finding_html(f, docs_base) for f in diagnosis.findings)
    rows = "".join(
        f"<tr><td>{p.pid}</td><td>{p.samples}</td><td>{p.rss_peak / MiB:.1f}</td>"
        f"<td>{p.cpu_median * 100:.0f}</td>"
        f"<td>{'' if p.delay_median_ms is None else f'{p.delay_median_ms:.1f}'}</td>"
        f"<td>{'' if p.delay_max_ms is None else f'{p.delay_max_ms:.0f}'}</td>"
        f"<td>{p.send_queue_peak / MiB:.1f}</td></tr>"
        for p in diagnosis.stats
    )
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in trace.errors[:20])
    command = html.escape(" ".join(trace.command))
    load = html.escape(trace.load_command or "—")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>sluicegate doctor — {command}</title>
<style>{_CSS}</style>
<script>{plotly_js}</script>
</head><body>
<header><h1>sluicegate doctor</h1>
<div>server <code>{command}</code> · port {trace.port or "?"} · load <code>{load}</code> ·
{html.escape(span)}</div></header>
<main>
<p class="verdict">{verdict}</p>
{findings}
<h2>Charts</h2>
<p>Drag to zoom (all charts follow), double-click to reset; the blue band is the load.
Raw samples: <a href="{html.escape(json_name)}">{html.escape(json_name)}</a>.</p>
<div id="chart"></div>
<h2>Processes</h2>
<table class="procs"><tr><th>pid</th><th>samples</th><th>peak RSS MiB</th>
<th>CPU % (load)</th><th>delay median ms</th><th>delay max ms</th><th>send queue MiB</th></tr>
{rows}</table>
{f"<h3>Probe notes</h3><ul>{errors}</ul>" if errors else ""}
</main>
<script>
(function () {{
  var fig = {fig};
  if (fig.data.length) {{
    Plotly.newPlot("chart", fig.data, fig.layout, {{responsive: true, displaylogo: false}});
  }} else {{
    document.getElementById("chart").textContent = "No samples to chart.";
  }}
}})();
</script>
</body></html>
"""


def print_summary(
    trace: Trace, diagnosis: Diagnosis, console: Console, report_path: str | None = None
) -> None:
    """A few lines for the terminal: the verdict, one row per finding, where the report is."""
    if not diagnosis.findings:
        console.print(
            "[green]doctor: no problems found[/]"
            if trace.samples
            else "[yellow]doctor: no samples recorded[/]"
        )
    else:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("severity")
        table.add_column("finding")
        table.add_column("pid", justify="right")
        table.add_column("evidence")
        for f in diagnosis.findings:
            colour = {"critical": "red", "warning": "yellow", "info": "blue"}[f.severity]
            table.add_row(f"[{colour}]{f.severity}[/]", f.id, str(f.pid or ""), f.summary)
        console.print(table)
    pids = ", ".join(str(p) for p in trace.pids) or "none"
    console.print(f"samples: {len(trace.samples)} from pids {pids}")
    if report_path:
        console.print(f"report: {report_path}")
