"""analyze() on synthetic traces (one problem each) and on traces recorded from a real
uvicorn server (tests/doctor/data, recorded with tests/doctor/doctor_app.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluicegate.doctor.analysis import (
    FINDING_IDS,
    MiB,
    Thresholds,
    analyze,
    culprits,
    detect_window,
    pearson,
    percentile,
)
from sluicegate.doctor.samples import Event, Sample, StackSample, Trace

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parents[2] / "docs" / "diagnoses"
T0 = 1_000_000.0


def timeline(
    seconds: float, *, pid: int = 1, dt: float = 0.01, net_every: int = 10, **values: object
) -> list[Sample]:
    """Samples every ``dt``; each keyword is a constant or a function of t (seconds
    from T0). Socket/fd/task fields only every ``net_every`` samples, as the probe does."""
    net = {
        "tasks",
        "fds",
        "connections",
        "send_queue",
        "send_queue_max",
        "send_queue_sockets",
        "streams",
    }
    out = []
    for i in range(int(seconds / dt)):
        t = i * dt
        kwargs = {}
        for key, value in values.items():
            if key in net and i % net_every:
                continue
            kwargs[key] = value(t) if callable(value) else value
        out.append(Sample(pid=pid, t=T0 + t, **kwargs))  # type: ignore[arg-type]
    return out


def ids(trace: Trace) -> list[str]:
    return [f.id for f in analyze(trace).findings]


def load(lo: float, hi: float, busy: float, idle: float = 0.0):  # type: ignore[no-untyped-def]
    return lambda t: busy if lo <= t < hi else idle


# -- helpers -------------------------------------------------------------------------


def test_percentile_and_pearson() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([5], 0.99) == 5
    with pytest.raises(ValueError):
        percentile([], 0.5)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0


# -- load window ---------------------------------------------------------------------


def test_window_from_connections() -> None:
    trace = Trace(samples=timeline(4, connections=load(1.0, 3.0, 5)))
    win = detect_window(trace)
    assert win is not None and win.source == "connections"
    assert win.start == pytest.approx(T0 + 1.0, abs=0.11)
    assert win.end == pytest.approx(T0 + 3.0, abs=0.11)


def test_window_from_command_events_and_union() -> None:
    samples = timeline(4, rss=10 * MiB)
    events = [Event(T0 + 0.5, "load-start"), Event(T0 + 3.5, "load-end")]
    win = detect_window(Trace(samples=samples, events=events))
    assert win is not None and (win.source, win.start, win.end) == ("command", T0 + 0.5, T0 + 3.5)
    busy = timeline(4, connections=load(1.0, 3.9, 2))
    win = detect_window(Trace(samples=busy, events=events))
    assert win is not None and win.source == "command+connections"
    assert win.start == T0 + 0.5 and win.end == pytest.approx(T0 + 3.9, abs=0.15)


def test_window_falls_back_to_whole_trace_and_none_when_empty() -> None:
    trace = Trace(samples=timeline(1, rss=1))
    win = detect_window(trace)
    assert win is not None and win.source == "trace"
    assert detect_window(Trace()) is None
    assert analyze(Trace()).findings == ()


# -- event loop ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "flagged"),
    [
        (lambda t: 12.0, True),  # median over 10 ms
        (lambda t: 150.0 if 1.0 <= t < 1.01 else 1.0, True),  # one 150 ms stall
        (lambda t: 90.0 if int(t * 100) % 50 == 0 else 5.0, False),  # under both limits
    ],
)
def test_event_loop_delay_limits(delay: object, flagged: bool) -> None:
    trace = Trace(samples=timeline(2, loop_delay_ms=delay))
    assert ("event-loop-blocked" in ids(trace)) is flagged


def test_blocking_code_is_named_from_stacks() -> None:
    lib = ("/venv/lib/python3.11/site-packages/uvicorn/server.py", 10, "serve")
    std = ("/usr/lib/python3.11/asyncio/events.py", 80, "_run")
    app = ("/srv/app/views.py", 42, "render_report")
    helper = ("/srv/app/util.py", 7, "checksum")
    stacks = [
        StackSample(1, T0 + 1.0, 60, (lib, std, app)),
        StackSample(
            1, T0 + 1.1, 160, (lib, std, app, ("/usr/lib/python3.11/json/encoder.py", 1, "encode"))
        ),
        StackSample(1, T0 + 1.5, 70, (lib, helper)),
    ]
    found = culprits(stacks)
    assert [c.function for c in found] == ["render_report", "checksum"]
    assert found[0].hits == 2 and found[0].max_blocked_ms == 160
    assert found[0].where == "render_report (/srv/app/views.py:42)"
    only_library = culprits([StackSample(1, 0, 60, (lib, std))])
    assert only_library[0].function == "_run"  # nothing of the app: the innermost frame
    trace = Trace(
        samples=timeline(2, loop_delay_ms=lambda t: 200.0 if t > 1 else 1.0), stacks=stacks
    )
    finding = analyze(trace).findings[0]
    assert finding.id == "event-loop-blocked" and finding.culprits[0].function == "render_report"
    assert "render_report" in finding.summary
    assert finding.evidence["max_ms"] == 200.0


# -- GC ------------------------------------------------------------------------------


def test_gc_pauses_within_one_second() -> None:
    burst = timeline(3, gc_ms=lambda t: (0.0, 0.0, 15.0) if 1.0 <= t < 1.1 else (0.0, 0.0, 0.0))
    trace = Trace(samples=burst)
    finding = next(f for f in analyze(trace).findings if f.id == "gc-pauses")
    assert finding.evidence["worst_second_ms"] == pytest.approx(150.0)
    assert finding.evidence["gen2_ms"] == pytest.approx(150.0)
    spread = timeline(
        10, gc_ms=lambda t: (0.0, 0.0, 15.0) if int(t * 100) % 100 == 0 else (0.0, 0.0, 0.0)
    )
    assert "gc-pauses" not in ids(Trace(samples=spread))


# -- I/O -------------------------------------------------------------------------------


def test_low_cpu_under_load_is_io() -> None:
    trace = Trace(samples=timeline(3, cpu=0.05, loop_delay_ms=0.5, connections=load(0.5, 2.5, 4)))
    finding = next(f for f in analyze(trace).findings if f.id == "io-bound")
    assert finding.severity == "info" and finding.evidence["cpu_median"] == 0.05
    busy = Trace(samples=timeline(3, cpu=0.95, loop_delay_ms=0.5, connections=load(0.5, 2.5, 4)))
    assert "io-bound" not in ids(busy)
    short = Trace(samples=timeline(3, cpu=0.05, loop_delay_ms=0.5, connections=load(0.5, 0.9, 4)))
    assert "io-bound" not in ids(short)


# -- memory ------------------------------------------------------------------------------


def test_rss_growing_with_slow_readers_is_backpressure_ignored() -> None:
    rss = lambda t: (30 + max(0.0, min(t, 3.0) - 1.0) * 50) * MiB  # noqa: E731
    trace = Trace(
        samples=timeline(
            4,
            rss=rss,
            connections=load(1.0, 3.0, 20),
            send_queue=lambda t: int(min(max(t - 1.0, 0), 2) * 20 * MiB) if t < 3 else 0,
            send_queue_max=lambda t: 4 * MiB if 1.0 <= t < 3 else 0,
        )
    )
    finding = next(f for f in analyze(trace).findings if f.id == "backpressure-ignored")
    assert finding.evidence["rise_bytes"] >= 90 * MiB
    assert "memory-growth" not in ids(trace)


def test_rss_growing_without_slow_readers_is_memory_growth() -> None:
    trace = Trace(
        samples=timeline(
            4,
            rss=lambda t: (30 + max(0.0, min(t, 3.0) - 1.0) * 50) * MiB,
            connections=load(1.0, 3.0, 20),
            send_queue=0,
            send_queue_max=0,
        )
    )
    found = ids(trace)
    assert "memory-growth" in found and "backpressure-ignored" not in found
    flat = Trace(samples=timeline(4, rss=30 * MiB, connections=load(1.0, 3.0, 20)))
    assert ids(flat) == []


def test_kernel_send_queues_summed_over_workers() -> None:
    workers = [
        *timeline(2, pid=1, send_queue=10 * MiB, send_queue_sockets=5, send_queue_max=2 * MiB),
        *timeline(2, pid=2, send_queue=10 * MiB, send_queue_sockets=5, send_queue_max=2 * MiB),
    ]
    finding = next(
        f for f in analyze(Trace(samples=workers)).findings if f.id == "kernel-send-queues"
    )
    assert finding.evidence["send_queue_peak"] == 20 * MiB
    assert finding.evidence["sockets_with_queue"] == 10
    assert finding.severity == "warning"
    huge = Trace(samples=timeline(1, send_queue=300 * MiB, send_queue_max=4 * MiB))
    assert analyze(huge).findings[0].severity == "critical"
    small = Trace(samples=timeline(1, send_queue=8 * MiB))
    assert "kernel-send-queues" not in ids(small)


# -- after the load ----------------------------------------------------------------------------


def after_load(**values: object) -> Trace:
    events = [Event(T0 + 1.0, "load-start"), Event(T0 + 2.0, "load-end")]
    return Trace(samples=timeline(3, **values), events=events)


def test_memory_not_released() -> None:
    trace = after_load(rss=lambda t: (30 if t < 1.0 else 80) * MiB)
    finding = next(f for f in analyze(trace).findings if f.id == "memory-not-released")
    assert finding.evidence["retained_share"] == pytest.approx(1.0)
    released = after_load(rss=lambda t: (80 if 1.0 <= t < 2.0 else 30) * MiB)
    assert "memory-not-released" not in ids(released)


def test_task_and_fd_leaks() -> None:
    trace = after_load(tasks=lambda t: 3 if t < 1.0 else 13, fds=lambda t: 10 if t < 1.0 else 40)
    found = {f.id: f for f in analyze(trace).findings}
    assert found["task-leak"].evidence == {"before": 3, "after": 13, "leaked": 10}
    assert found["fd-leak"].evidence["leaked"] == 30
    settled = after_load(tasks=lambda t: 13 if 1.0 <= t < 2.0 else 3, fds=10)
    assert not {"task-leak", "fd-leak"} & set(ids(settled))
    strict = Thresholds(leaked_tasks=20)
    assert "task-leak" not in [f.id for f in analyze(trace, strict).findings]


def test_lingering_producers() -> None:
    def streams(t: float) -> dict[str, float]:
        return {"active_streams": 0, "lingering_producers": 2 if t > 1.5 else 0, "disconnects": 2}

    finding = next(
        f for f in analyze(after_load(streams=streams)).findings if f.id == "lingering-producers"
    )
    assert finding.evidence["after_load"] == 2
    stopped = after_load(streams=lambda t: {"lingering_producers": 2 if 1.5 < t < 2 else 0})
    assert "lingering-producers" not in ids(stopped)


def test_healthy_trace() -> None:
    trace = after_load(
        rss=30 * MiB, cpu=0.9, loop_delay_ms=0.4, tasks=3, fds=10, connections=load(1, 2, 8)
    )
    diagnosis = analyze(trace)
    assert diagnosis.findings == () and diagnosis.healthy
    assert diagnosis.stats[0].delay_max_ms == pytest.approx(0.4)


# -- recorded traces -------------------------------------------------------------------------


def recorded(name: str) -> Trace:
    return Trace.from_json((DATA / name).read_text())


def test_recorded_mixed_problems() -> None:
    diagnosis = analyze(recorded("recorded_mixed.json"))
    found = {f.id: f for f in diagnosis.findings}
    assert set(found) == {
        "event-loop-blocked",  # /block?ms=300
        "kernel-send-queues",  # 30 clients not reading /big
        "lingering-producers",  # /linger
        "memory-growth",  # /hoard after the slow readers left
        "memory-not-released",
        "task-leak",  # /leak
        "io-bound",
    }
    blocked = found["event-loop-blocked"]
    assert blocked.culprits[0].filename.endswith("doctor_app.py")
    assert blocked.evidence["max_ms"] >= 250
    assert found["kernel-send-queues"].evidence["send_queue_peak"] > 50 * MiB
    assert found["task-leak"].evidence["leaked"] == 10
    assert found["lingering-producers"].evidence["after_load"] == 3
    assert diagnosis.window is not None and diagnosis.window.source.startswith("command")


def test_recorded_unbounded_queue() -> None:
    found = {f.id: f for f in analyze(recorded("recorded_unbounded.json")).findings}
    assert "backpressure-ignored" in found and "memory-growth" not in found
    assert found["backpressure-ignored"].evidence["rise_bytes"] > 64 * MiB
    assert "kernel-send-queues" in found


def test_every_finding_has_a_docs_page() -> None:
    for finding_id in FINDING_IDS:
        page = DOCS / f"{finding_id}.md"
        assert page.is_file(), page
        text = page.read_text()
        assert text.startswith("# ") and "## How to fix" in text


def test_stack_caveats() -> None:
    def streams(t: float) -> dict[str, float]:
        return {"active_streams": 1, "caveat:base-http-middleware": 1 + int(t)}

    found = {f.id: f for f in analyze(after_load(streams=streams)).findings}
    assert found["stack-caveats"].evidence == {"base-http-middleware": 3}
    assert "BaseHTTPMiddleware" in found["stack-caveats"].recommendation
    assert "stack-caveats" not in ids(after_load(streams={"active_streams": 1}))
