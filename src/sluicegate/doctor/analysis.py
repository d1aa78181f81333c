"""Turn a :class:`~sluicegate.doctor.samples.Trace` into findings (sans-IO).

:func:`analyze` finds the load window, then checks the trace for

* Clinic.js Doctor's three problems: ``event-loop-blocked`` (delay median ≥ 10 ms or
  max ≥ 100 ms, with the blocking code named from sampled stacks), ``gc-pauses``
  (≥ 100 ms of GC in one second) and ``io-bound`` (the CPU idles under load);
* what Clinic does not look for: ``backpressure-ignored`` and ``memory-growth``
  (RSS climbs under load), ``kernel-send-queues`` (slow readers pin kernel memory
  that RSS never shows), ``memory-not-released``, ``task-leak`` and ``fd-leak``
  (the process does not return to its idle state after the load) and
  ``lingering-producers`` (producers still run after their clients left);
* ``stack-caveats``: sluicegate ran under a layer that breaks its promises (Starlette's
  ``BaseHTTPMiddleware``, Django's stock handler), as :mod:`sluicegate.engine.caveats`
  counted it in the probed process.

Every :class:`Finding` carries its evidence as numbers and the docs page that explains
it. Nothing here touches a socket or a file::

    >>> from sluicegate.doctor.samples import Sample, Trace
    >>> trace = Trace(samples=[Sample(pid=1, t=i / 100, loop_delay_ms=150.0) for i in range(50)])
    >>> [f.id for f in analyze(trace).findings]
    ['event-loop-blocked']
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sluicegate.doctor.samples import Sample, StackSample, Trace

Severity = Literal["critical", "warning", "info"]

MiB = 1 << 20
#: ``/proc/net/sockstat`` counts TCP memory in pages; 4 KiB on every common Linux.
TCP_PAGE = 4096

#: Chart keys the report draws, in order; findings name the charts they concern.
CHARTS = ("cpu", "memory", "loop", "gc", "tasks", "fds", "sockets", "streams")

#: Every finding id :func:`analyze` can report; each has ``docs/diagnoses/<id>.md``.
FINDING_IDS = (
    "event-loop-blocked",
    "gc-pauses",
    "io-bound",
    "backpressure-ignored",
    "memory-growth",
    "kernel-send-queues",
    "memory-not-released",
    "task-leak",
    "fd-leak",
    "lingering-producers",
    "stack-caveats",
)

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits the checks use; the defaults follow Clinic.js Doctor where it has one."""

    loop_delay_median_ms: float = 10.0
    loop_delay_max_ms: float = 100.0
    #: GC pause time in any one-second window
    gc_ms_per_second: float = 100.0
    #: median CPU (cores) under load below which the server counts as waiting on I/O
    io_cpu: float = 0.5
    #: shortest load window in which low CPU means something
    io_min_seconds: float = 1.0
    memory_growth_bytes: int = 32 * MiB
    send_queue_bytes: int = 16 * MiB
    send_queue_critical_bytes: int = 256 * MiB
    #: a socket with this much queued counts as a slow reader
    slow_reader_bytes: int = 64 * 1024
    retained_bytes: int = 16 * MiB
    leaked_tasks: int = 5
    leaked_fds: int = 5


@dataclass(frozen=True, slots=True)
class Window:
    """The span in which load was applied; ``source`` says how it was found."""

    start: float
    end: float
    #: ``connections``, ``streams``, ``command``, ``command+connections``… or ``trace``
    source: str

    def __contains__(self, t: object) -> bool:
        return isinstance(t, float | int) and self.start <= t <= self.end

    @property
    def seconds(self) -> float:
        """Length of the window."""
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Culprit:
    """Code seen on the loop's stack while it was blocked."""

    function: str
    filename: str
    line: int
    #: stack samples that showed it (each stands for up to ~100 ms of blocking)
    hits: int
    #: the longest block it was seen in
    max_blocked_ms: float

    @property
    def where(self) -> str:
        """``function (file:line)``."""
        return f"{self.function} ({self.filename}:{self.line})"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem the doctor found, with numbers and a page that explains it."""

    id: str
    title: str
    severity: Severity
    summary: str
    recommendation: str
    evidence: dict[str, float | int | str] = field(default_factory=dict)
    charts: tuple[str, ...] = ()
    pid: int | None = None
    culprits: tuple[Culprit, ...] = ()

    @property
    def doc(self) -> str:
        """Path of the docs page, relative to the project root."""
        return f"docs/diagnoses/{self.id}.md"


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """Headline numbers of one process, for the report's summary table."""

    pid: int
    samples: int
    has_loop: bool
    rss_peak: int
    cpu_median: float
    delay_median_ms: float | None
    delay_max_ms: float | None
    send_queue_peak: int


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What :func:`analyze` concluded."""

    window: Window | None
    findings: tuple[Finding, ...]
    stats: tuple[ProcessStats, ...]

    @property
    def healthy(self) -> bool:
        """True when nothing worse than ``info`` was found."""
        return all(f.severity == "info" for f in self.findings)

    @property
    def flagged_charts(self) -> set[str]:
        """Charts at least one warning or critical finding points at."""
        return {c for f in self.findings if f.severity != "info" for c in f.charts}


# -- small statistics -------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either series is constant or too short."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


def _values(samples: Iterable[Sample], get: Callable[[Sample], float | int | None]) -> list[float]:
    return [float(v) for s in samples if (v := get(s)) is not None]


def _mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


# -- load window ------------------------------------------------------------------


def _activity_bins(
    trace: Trace, get: Callable[[Sample], float | None], width: float
) -> list[tuple[float, float]]:
    """Sum ``get`` over processes per time bin: (bin start, activity)."""
    per_bin: dict[int, dict[int, float]] = {}
    for s in trace.samples:
        v = get(s)
        if v is None:
            continue
        slot = per_bin.setdefault(int(s.t // width), {})
        slot[s.pid] = max(slot.get(s.pid, 0.0), v)
    return [(k * width, sum(v.values())) for k, v in sorted(per_bin.items())]


def detect_window(trace: Trace, width: float = 0.1) -> Window | None:
    """Find when load was applied.

    From the activity the probes saw (established connections, else sluicegate's
    active streams) above its idle floor, widened to the ``load-start``/``load-end``
    events of the ``--on-port`` command when there are some (short requests fall
    between the 100 ms socket samples; the command's span is the ground truth).
    Without either, the whole trace. ``None`` for an empty trace.
    """
    if not trace.samples and not trace.events:
        return None
    sources: tuple[tuple[str, Callable[[Sample], float | None]], ...] = (
        ("connections", lambda s: None if s.connections is None else float(s.connections)),
        ("streams", lambda s: s.stream("active_streams")),
    )
    seen: Window | None = None
    for name, get in sources:
        bins = _activity_bins(trace, get, width)
        if not bins:
            continue
        floor = min(a for _, a in bins)
        busy = [t for t, a in bins if a > floor]
        if len(busy) >= 3:
            seen = Window(busy[0], busy[-1] + width, name)
            break
    began, ended = trace.event("load-start"), trace.event("load-end")
    if began is not None:
        last = max((s.t for s in trace.samples), default=began.t)
        end = ended.t if ended is not None else last
        if seen is None:
            return Window(began.t, end, "command")
        return Window(min(seen.start, began.t), max(seen.end, end), f"command+{seen.source}")
    if seen is not None:
        return seen
    if not trace.samples:
        return None
    return Window(trace.samples[0].t, trace.samples[-1].t, "trace")


# -- stacks -------------------------------------------------------------------------

_LIBRARY = re.compile(r"(site-packages|dist-packages|/lib/python3\.\d+/|^<)")


def _is_library(filename: str) -> bool:
    return bool(_LIBRARY.search(filename))


def culprits(stacks: Iterable[StackSample], top: int = 3) -> tuple[Culprit, ...]:
    """Name the code that blocked the loop: per stack, the innermost frame of the
    application (not the standard library or an installed package), else the innermost
    frame; ranked by how often it was seen."""
    hits: dict[tuple[str, int, str], list[float]] = {}
    for st in stacks:
        if not st.frames:
            continue
        own = [f for f in st.frames if not _is_library(f[0])]
        frame = own[-1] if own else st.frames[-1]
        hits.setdefault(frame, []).append(st.blocked_ms)
    ranked = sorted(hits.items(), key=lambda kv: (-len(kv[1]), -max(kv[1])))
    return tuple(
        Culprit(function=f[2], filename=f[0], line=f[1], hits=len(v), max_blocked_ms=max(v))
        for f, v in ranked[:top]
    )


# -- checks ---------------------------------------------------------------------------


def _check_loop(
    pid: int, window: list[Sample], trace: Trace, win: Window, th: Thresholds
) -> Finding | None:
    delays = _values(window, lambda s: s.loop_delay_ms)
    if not delays:
        return None
    median, worst = statistics.median(delays), max(delays)
    if median < th.loop_delay_median_ms and worst < th.loop_delay_max_ms:
        return None
    stacks = [st for st in trace.stacks if st.pid == pid and win.start - 1 <= st.t <= win.end + 1]
    found = culprits(stacks)
    blocked_over = sum(1 for d in delays if d >= th.loop_delay_max_ms)
    severity: Severity = "critical" if worst >= 1000 or median >= 50 else "warning"
    named = f" Most seen on the stack: {found[0].where}." if found else ""
    return Finding(
        id="event-loop-blocked",
        title="The event loop was blocked",
        severity=severity,
        pid=pid,
        summary=(
            f"Event-loop delay under load: median {median:.1f} ms, p99 "
            f"{percentile(delays, 0.99):.0f} ms, max {worst:.0f} ms (limits "
            f"{th.loop_delay_median_ms:.0f} / {th.loop_delay_max_ms:.0f} ms).{named}"
        ),
        recommendation=(
            "Move blocking or CPU-heavy work off the loop (asyncio.to_thread, a process "
            "pool, an async client); split long loops with `await asyncio.sleep(0)`."
        ),
        evidence={
            "median_ms": round(median, 2),
            "p99_ms": round(percentile(delays, 0.99), 2),
            "max_ms": round(worst, 2),
            "samples_over_max": blocked_over,
            "stacks": len(stacks),
        },
        charts=("loop",),
        culprits=found,
    )


def _check_gc(pid: int, samples: list[Sample], th: Thresholds) -> Finding | None:
    timed = [(s.t, s.gc_total_ms, s) for s in samples if s.gc_total_ms > 0]
    if not timed:
        return None
    # Sliding one-second window over the pauses, as Clinic does.
    worst_sum, left, running = 0.0, 0, 0.0
    for t, ms, _ in timed:
        running += ms
        while timed[left][0] <= t - 1.0:
            running -= timed[left][1]
            left += 1
        worst_sum = max(worst_sum, running)
    if worst_sum < th.gc_ms_per_second:
        return None
    per_gen = [sum(s.gc_ms[g] for _, _, s in timed) for g in range(3)]
    longest = max(s.gc_max_ms for _, _, s in timed)
    severity: Severity = "critical" if worst_sum >= 500 else "warning"
    return Finding(
        id="gc-pauses",
        title="Garbage collection paused the process",
        severity=severity,
        pid=pid,
        summary=(
            f"{worst_sum:.0f} ms of GC pauses within one second (limit "
            f"{th.gc_ms_per_second:.0f} ms); longest single pause {longest:.0f} ms; "
            f"generation 2 took {per_gen[2]:.0f} ms of {sum(per_gen):.0f} ms in total."
        ),
        recommendation=(
            "Allocate fewer short-lived container objects per request, break reference "
            "cycles, or call gc.freeze() after start-up and raise gc.set_threshold()."
        ),
        evidence={
            "worst_second_ms": round(worst_sum, 2),
            "longest_pause_ms": round(longest, 2),
            "gen0_ms": round(per_gen[0], 2),
            "gen1_ms": round(per_gen[1], 2),
            "gen2_ms": round(per_gen[2], 2),
        },
        charts=("gc",),
    )


def _check_io(
    pid: int, window: list[Sample], win: Window, slow_readers: bool, th: Thresholds
) -> Finding | None:
    cpu = _values(window, lambda s: s.cpu)
    delays = _values(window, lambda s: s.loop_delay_ms)
    if not delays or len(cpu) < 10 or win.seconds < th.io_min_seconds:
        return None
    median_cpu = statistics.median(cpu)
    if median_cpu >= th.io_cpu or statistics.median(delays) >= th.loop_delay_median_ms:
        return None
    because = (
        "clients read slowly (see kernel-send-queues)"
        if slow_readers
        else "a database, disk, upstream service or lock — or the load was light"
    )
    return Finding(
        id="io-bound",
        title="The server waited under load (low CPU)",
        severity="info",
        pid=pid,
        summary=(
            f"Under load the process used a median {median_cpu * 100:.0f} % of one core "
            f"while its loop was free: it was waiting, most likely on {because}."
        ),
        recommendation=(
            "Find what the requests wait for: time the awaits (e.g. tracing spans), check "
            "connection-pool sizes and upstream latency; raise concurrency if it is latency."
        ),
        evidence={"cpu_median": round(median_cpu, 3), "window_s": round(win.seconds, 2)},
        charts=("cpu",),
    )


def _check_memory(
    pid: int, before: list[Sample], window: list[Sample], th: Thresholds
) -> Finding | None:
    """Memory that rose under load; blamed on slow readers when the evidence says so.

    In phases: how much RSS rose, how it went with the bytes clients had not taken,
    then which finding that makes.
    """
    rss = _values(window, lambda s: s.rss)
    if len(rss) < 3:
        return None
    base = statistics.median(_values(before[-20:], lambda s: s.rss) or rss[:3])
    peak = max(rss)
    rise = peak - base
    if rise < th.memory_growth_bytes:
        return None
    r, rise_slow, buffered = _outstanding_evidence(window, th)
    span = max(window[-1].t - window[0].t, 1e-6)
    evidence: dict[str, float | int | str] = {
        "rss_before": int(base),
        "rss_peak": int(peak),
        "rise_bytes": int(rise),
        "rise_mib_per_s": round(rise / MiB / span, 2),
        "corr_rss_outstanding": round(r, 3),
        "rise_with_slow_readers": int(rise_slow),
        "sluicegate_buffered_peak": int(buffered),
    }
    if rise_slow >= 0.5 * rise or r >= 0.7:
        severity: Severity = "critical" if rise >= 8 * th.memory_growth_bytes else "warning"
        return _backpressure_ignored(pid, severity, rise, peak, r, evidence, buffered)
    return Finding(
        id="memory-growth",
        title="Memory grew under load",
        severity="warning",
        pid=pid,
        summary=(
            f"RSS rose {_mib(rise)} under load (to {_mib(peak)}, "
            f"{rise / MiB / span:.1f} MiB/s) without slow readers to explain it."
        ),
        recommendation=(
            "Look for per-request caches, request bodies read whole, or results built in "
            "memory; stream them instead, and bound every cache."
        ),
        evidence=evidence,
        charts=("memory",),
    )


def _outstanding_evidence(window: list[Sample], th: Thresholds) -> tuple[float, float, int]:
    """How RSS went with the bytes clients had not taken: (correlation r, bytes of the
    rise that happened while some client read slowly, sluicegate's buffered peak)."""
    net = [s for s in window if s.rss is not None and s.send_queue is not None]
    outstanding = [float((s.send_queue or 0) + (s.stream("bytes_buffered") or 0)) for s in net]
    r = pearson([float(s.rss or 0) for s in net], outstanding)
    rise_slow = sum(
        max(0, (b.rss or 0) - (a.rss or 0))
        for a, b in itertools.pairwise(net)
        if (a.send_queue_max or 0) >= th.slow_reader_bytes
        or (b.send_queue_max or 0) >= th.slow_reader_bytes
    )
    buffered = max((s.stream("bytes_buffered") or 0 for s in net), default=0)
    return r, rise_slow, int(buffered)


def _backpressure_ignored(
    pid: int,
    severity: Severity,
    rise: float,
    peak: float,
    r: float,
    evidence: dict[str, float | int | str],
    buffered: int,
) -> Finding:
    return Finding(
        id="backpressure-ignored",
        title="Memory grew with bytes the clients had not taken",
        severity=severity,
        pid=pid,
        summary=(
            f"RSS rose {_mib(rise)} under load (to {_mib(peak)}) while clients read "
            f"slower than the server produced (correlation with bytes outstanding "
            f"r = {r:.2f}): something buffers instead of waiting for the socket."
        ),
        recommendation=(
            "Await every write (ASGI send) before producing more; replace unbounded "
            "queues with sluicegate's Channel (byte budget + policy) or StreamResponse."
        ),
        evidence=evidence,
        charts=("memory", "sockets", "streams") if buffered else ("memory", "sockets"),
    )


def _check_send_queues(samples: list[Sample], th: Thresholds) -> Finding | None:
    bins: dict[int, dict[int, Sample]] = {}
    for s in samples:
        if s.send_queue is not None:
            bins.setdefault(int(s.t // 0.1), {})[s.pid] = s
    if not bins:
        return None
    worst_key = max(bins, key=lambda k: sum(s.send_queue or 0 for s in bins[k].values()))
    at_peak = bins[worst_key].values()
    peak = sum(s.send_queue or 0 for s in at_peak)
    if peak < th.send_queue_bytes:
        return None
    sockets = sum(s.send_queue_sockets or 0 for s in at_peak)
    biggest = max(s.send_queue_max or 0 for s in at_peak)
    tcp_pages = max((s.tcp_mem_pages or 0 for s in samples), default=0)
    rss = max((s.rss or 0 for s in at_peak), default=0)
    severity: Severity = "critical" if peak >= th.send_queue_critical_bytes else "warning"
    return Finding(
        id="kernel-send-queues",
        title="Slow readers held kernel socket memory",
        severity=severity,
        summary=(
            f"The kernel held {_mib(peak)} in the send queues of {sockets} sockets "
            f"(up to {_mib(biggest)} on one) — memory RSS does not show; all TCP sockets "
            f"of the machine peaked at {_mib(tcp_pages * TCP_PAGE)}."
        ),
        recommendation=(
            "Bound what each slow client may pin: a stall timeout and minimum rate "
            "(sluicegate Guard), TCP_NOTSENT_LOWAT (or a smaller SO_SNDBUF or "
            "net.ipv4.tcp_wmem), and a cap on "
            "concurrent streams."
        ),
        evidence={
            "send_queue_peak": int(peak),
            "sockets_with_queue": int(sockets),
            "largest_queue": int(biggest),
            "tcp_mem_peak": int(tcp_pages * TCP_PAGE),
            "rss_at_peak": int(rss),
        },
        charts=("sockets",),
    )


def _after_load(
    pid: int, before: list[Sample], after: list[Sample], window: list[Sample], th: Thresholds
) -> list[Finding]:
    found: list[Finding] = []
    if len(before) < 2 or len(after) < 2:
        return found

    def idle(samples: list[Sample], get: Callable[[Sample], float | int | None]) -> float | None:
        values = _values(samples[-20:], get)
        return statistics.median(values) if values else None

    rss_b, rss_a = idle(before, lambda s: s.rss), idle(after, lambda s: s.rss)
    peak = max(_values(window, lambda s: s.rss), default=0.0)
    if rss_b is not None and rss_a is not None and peak > rss_b:
        kept = rss_a - rss_b
        share = kept / (peak - rss_b)
        if kept >= th.retained_bytes and share >= 0.5:
            found.append(
                Finding(
                    id="memory-not-released",
                    title="Memory did not return to idle after the load",
                    severity="warning" if share >= 0.9 else "info",
                    pid=pid,
                    summary=(
                        f"After the load RSS stayed {_mib(kept)} above idle "
                        f"({share * 100:.0f} % of the growth): a leak, or memory the "
                        f"allocator keeps; a second load run tells them apart."
                    ),
                    recommendation=(
                        "Run the load twice: if RSS climbs again, it is a leak "
                        "(tracemalloc snapshots diff); if it plateaus, it is allocator reuse."
                    ),
                    evidence={
                        "rss_idle_before": int(rss_b),
                        "rss_peak": int(peak),
                        "rss_idle_after": int(rss_a),
                        "retained_share": round(share, 3),
                    },
                    charts=("memory",),
                )
            )
    for key, get, limit, title, chart in (
        ("task-leak", lambda s: s.tasks, th.leaked_tasks, "asyncio tasks", "tasks"),
        ("fd-leak", lambda s: s.fds, th.leaked_fds, "open file descriptors", "fds"),
    ):
        b, a = idle(before, get), idle(after, get)
        if b is None or a is None or a - b < limit:
            continue
        found.append(
            Finding(
                id=key,
                title=f"{title.capitalize()} did not return to idle",
                severity="warning",
                pid=pid,
                summary=(
                    f"{title.capitalize()}: {b:.0f} before the load, {a:.0f} after it "
                    f"({a - b:+.0f}) — something started per request is never finished."
                ),
                recommendation=(
                    "Keep a reference to and await or cancel every task you create (a "
                    "TaskGroup); close responses, files and clients in finally/async with."
                    if key == "task-leak"
                    else "Close every file, socket and client you open (async with); "
                    "count CLOSE_WAIT sockets with `ss -tanp`."
                ),
                evidence={"before": int(b), "after": int(a), "leaked": int(a - b)},
                charts=(chart,),
            )
        )
    return found


def _check_lingering(pid: int, samples: list[Sample], win: Window) -> Finding | None:
    late = [s for s in samples if s.t > win.end and s.stream("lingering_producers") is not None]
    if not late:
        return None
    last = int(late[-1].stream("lingering_producers") or 0)
    peak = int(max(s.stream("lingering_producers") or 0 for s in samples))
    if last <= 0:
        return None
    gone = int(late[-1].stream("disconnects") or 0)
    return Finding(
        id="lingering-producers",
        title="Producers kept running after their clients left",
        severity="warning",
        pid=pid,
        summary=(
            f"{last} producers were still running after the load ended (peak {peak}; "
            f"{gone} clients disconnected): they burn CPU and hold memory for nobody."
        ),
        recommendation=(
            "Make producers stop when the stream ends: handle CancelledError / "
            "GeneratorExit, close upstream iterators in finally, pass a cancel signal."
        ),
        evidence={"after_load": last, "peak": peak, "disconnects": gone},
        charts=("streams",),
    )


#: What each caveat of :mod:`sluicegate.engine.caveats` breaks, for the summary.
_CAVEAT_EFFECTS = {
    "base-http-middleware": "failures after the head reach clients as clean ends, and "
    "each stream holds a second chunk",
    "django-stock-handler": "responses stream without sluicegate's byte budget",
}


def _check_caveats(pid: int, samples: list[Sample]) -> Finding | None:
    counts: dict[str, int] = {}
    for sample in samples:  # counters only grow: the last value is the total
        for key, value in (sample.streams or {}).items():
            if key.startswith("caveat:") and value:
                counts[key.removeprefix("caveat:")] = int(value)
    if not counts:
        return None
    effects = "; ".join(
        f"{n} streams under {name} ({_CAVEAT_EFFECTS.get(name, 'see the docs page')})"
        for name, n in sorted(counts.items())
    )
    return Finding(
        id="stack-caveats",
        title="A layer around sluicegate breaks its promises",
        severity="warning",
        pid=pid,
        summary=f"{effects}.",
        recommendation=(
            "Replace BaseHTTPMiddleware with pure ASGI middleware; serve Django with "
            "sluicegate.adapters.django.get_asgi_application()."
        ),
        evidence=dict(sorted(counts.items())),
        charts=("streams",),
    )


# -- entry point ------------------------------------------------------------------------


def analyze(trace: Trace, thresholds: Thresholds | None = None) -> Diagnosis:
    """Find the load window and run every check; findings sorted worst first."""
    th = thresholds or Thresholds()
    win = detect_window(trace)
    if win is None:
        return Diagnosis(None, (), ())
    findings: list[Finding] = []
    stats: list[ProcessStats] = []
    slow = _check_send_queues(trace.samples, th)
    if slow is not None:
        findings.append(slow)
    settle = trace.event("load-end")
    after_from = max(win.end, settle.t if settle else win.end)
    for pid, samples in trace.by_pid().items():
        before = [s for s in samples if s.t < win.start]
        window = [s for s in samples if s.t in win]
        after = [s for s in samples if s.t > after_from]
        for check in (
            _check_loop(pid, window, trace, win, th),
            _check_gc(pid, samples, th),
            _check_io(pid, window, win, slow is not None, th),
            _check_memory(pid, before, window, th),
            _check_lingering(pid, samples, win),
            _check_caveats(pid, samples),
        ):
            if check is not None:
                findings.append(check)
        findings.extend(_after_load(pid, before, after, window, th))
        delays = _values(window, lambda s: s.loop_delay_ms)
        stats.append(
            ProcessStats(
                pid=pid,
                samples=len(samples),
                has_loop=any(s.loop_delay_ms is not None for s in samples),
                rss_peak=int(max(_values(samples, lambda s: s.rss), default=0)),
                cpu_median=statistics.median(_values(window, lambda s: s.cpu) or [0.0]),
                delay_median_ms=statistics.median(delays) if delays else None,
                delay_max_ms=max(delays) if delays else None,
                send_queue_peak=int(max(_values(samples, lambda s: s.send_queue), default=0)),
            )
        )
    findings.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.id, f.pid or 0))
    return Diagnosis(win, tuple(findings), tuple(stats))
