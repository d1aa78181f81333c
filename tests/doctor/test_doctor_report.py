"""The report's figure and page, without a browser (see test_doctor_e2e for one)."""

from __future__ import annotations

import itertools
from io import StringIO

from rich.console import Console

from sluicegate.doctor.analysis import MiB, analyze
from sluicegate.doctor.report import MAX_POINTS, _decimate, figure, print_summary, render_html
from sluicegate.doctor.samples import Event, Sample, Trace


def blocked_trace() -> Trace:
    samples = [
        Sample(
            pid=pid,
            t=100.0 + i / 100,
            rss=(30 + pid) * MiB,
            cpu=0.5,
            loop_delay_ms=250.0 if 100 <= i < 110 else 1.0,
            connections=None if i % 10 else (3 if 50 <= i < 150 else 0),
            send_queue=None if i % 10 else 0,
        )
        for pid in (11, 12)
        for i in range(200)
    ]
    return Trace(
        samples=samples,
        command=["python", "app.py", "</script>"],
        events=[Event(100.5, "load-start"), Event(101.5, "load-end")],
    )


def test_one_shared_time_axis_and_flagged_chart() -> None:
    trace = blocked_trace()
    fig = figure(trace, analyze(trace))
    layout = fig["layout"]
    assert {t["xaxis"] for t in fig["data"]} == {"x"}
    axes = [k for k in layout if k.startswith("yaxis")]
    assert len(axes) == len({t["yaxis"] for t in fig["data"]})
    assert layout["hovermode"] == "x unified" and layout["xaxis"]["spikemode"] == "across"
    titles = {layout[k]["title"]["text"] for k in axes}
    assert "⚠ Event-loop delay (ms)" in titles
    assert "RSS (MiB)" in titles  # not flagged
    assert "sluicegate streams" not in " ".join(titles)  # no sluicegate metrics
    domains = sorted(layout[k]["domain"] for k in axes)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(domains))  # stacked
    names = {t["name"] for t in fig["data"]}
    assert {"pid 11", "pid 12"} <= names
    load = [s for s in layout["shapes"] if s.get("xref") == "x"]
    assert load and load[0]["x0"] < load[0]["x1"]


def test_decimation_keeps_peaks() -> None:
    xs = [float(i) for i in range(50_000)]
    ys = [1.0] * 50_000
    ys[31_337] = 999.0
    dx, dy = _decimate(xs, ys)
    assert len(dx) == MAX_POINTS and 999.0 in dy and dx == sorted(dx)
    assert _decimate([1.0], [2.0]) == ([1.0], [2.0])


def test_page_is_self_contained_and_escaped() -> None:
    trace = blocked_trace()
    page = render_html(trace, analyze(trace), plotly_js="/*plotly*/", docs_base="file:///d")
    assert "<script src" not in page
    assert "/*plotly*/" in page
    assert page.count("</script>") == 2  # the bundle and ours: the command was escaped
    assert 'href="file:///d/event-loop-blocked.md"' in page
    assert "Recommendation:" in page and "2 problems found" in page  # one per worker


def test_empty_trace_page_and_summary() -> None:
    trace = Trace(command=["x"])
    page = render_html(trace, analyze(trace), plotly_js="")
    assert "No samples were recorded" in page
    assert figure(trace, analyze(trace))["data"] == []
    out = StringIO()
    print_summary(trace, analyze(trace), Console(file=out, width=100), "r.html")
    assert "no samples recorded" in out.getvalue() and "report: r.html" in out.getvalue()


def test_terminal_summary_lists_findings() -> None:
    trace = blocked_trace()
    out = StringIO()
    print_summary(trace, analyze(trace), Console(file=out, width=120))
    text = out.getvalue()
    assert "event-loop-blocked" in text and "pids 11, 12" in text


def test_evidence_units() -> None:
    from sluicegate.doctor.report import _evidence_value

    assert _evidence_value("send_queue_peak", 3 * MiB) == "3.0 MiB"
    assert _evidence_value("sockets_with_queue", 30) == "30"
    assert _evidence_value("median_ms", 1.5) == "1.5"


def test_live_event_counters_are_drawn_beside_the_streams() -> None:
    samples = [
        Sample(
            pid=7,
            t=100.0 + i,
            rss=30 * MiB,
            streams={"active_streams": 5.0, "events_subscribers": 5.0, "events_dropped": i * 2.0},
        )
        for i in range(5)
    ]
    trace = Trace(samples=samples, command=["app"], events=[])
    names = {t["name"] for t in figure(trace, analyze(trace))["data"]}
    assert {"pid 7 subscribers", "pid 7 events dropped"} <= names


def test_a_trace_without_events_draws_no_subscribers() -> None:
    samples = [Sample(pid=7, t=100.0 + i, streams={"active_streams": 1.0}) for i in range(5)]
    trace = Trace(samples=samples, command=["app"], events=[])
    names = {t["name"] for t in figure(trace, analyze(trace))["data"]}
    assert not any("subscribers" in n for n in names)
