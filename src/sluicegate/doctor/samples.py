"""The doctor's data model: samples, stacks and run events, and their JSON form.

A :class:`Trace` is everything one ``sluicegate doctor`` run recorded. It is read from
the probes' JSON-lines files with :func:`read_probe_dir`, saved as ``report.json``
with :meth:`Trace.to_json` and read back with :meth:`Trace.from_json`::

    >>> t = Trace(samples=[Sample(pid=1, t=0.0, rss=10 << 20)])
    >>> Trace.from_json(t.to_json()).samples[0].rss
    10485760
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: Version of ``report.json``.
SCHEMA = 1


@dataclass(slots=True)
class Sample:
    """One probe reading of one process. ``None`` means "not measured this tick".

    Counters (``rss``, ``cpu``…) are read every sample; the socket, fd and task counts
    only every ``net_interval``, so they are ``None`` in between.
    """

    pid: int
    #: wall-clock time, seconds since the epoch (the same clock in every process)
    t: float
    rss: int | None = None
    #: CPU used since the previous sample, in cores (1.0 = one core busy)
    cpu: float | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    #: worst event-loop delay since the previous sample; ``None`` when no loop runs
    loop_delay_ms: float | None = None
    #: GC pause time since the previous sample, per generation
    gc_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gc_max_ms: float = 0.0
    tasks: int | None = None
    threads: int | None = None
    fds: int | None = None
    #: established TCP connections of the process
    connections: int | None = None
    #: bytes in the kernel send queues of the process's TCP sockets
    send_queue: int | None = None
    recv_queue: int | None = None
    send_queue_sockets: int | None = None
    send_queue_max: int | None = None
    #: pages of memory all TCP sockets of the machine hold (``/proc/net/sockstat``)
    tcp_mem_pages: int | None = None
    #: :func:`sluicegate.engine.metrics.snapshot` when the server uses sluicegate
    streams: dict[str, float] | None = None

    @property
    def gc_total_ms(self) -> float:
        """GC pause time since the previous sample, all generations."""
        return sum(self.gc_ms)

    def stream(self, key: str) -> float | None:
        """One sluicegate metric, or ``None`` when the server does not use sluicegate."""
        return None if self.streams is None else self.streams.get(key)


@dataclass(slots=True)
class StackSample:
    """The loop thread's stack, taken while the loop had been blocked ``blocked_ms``."""

    pid: int
    t: float
    blocked_ms: float
    #: ``(filename, line, function)``, outermost first
    frames: tuple[tuple[str, int, str], ...]


@dataclass(slots=True)
class ProcessInfo:
    """A process the probe ran in."""

    pid: int
    ppid: int = 0
    argv: tuple[str, ...] = ()
    started: float = 0.0
    interval: float = 0.01


@dataclass(slots=True)
class Event:
    """Something the orchestrator did or saw, e.g. ``load-start`` or ``server-exit``."""

    t: float
    kind: str
    detail: str = ""


@dataclass(slots=True)
class Trace:
    """Everything one doctor run recorded."""

    samples: list[Sample] = field(default_factory=list)
    stacks: list[StackSample] = field(default_factory=list)
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: the server command and the load command, as run
    command: list[str] = field(default_factory=list)
    load_command: str | None = None
    port: int | None = None
    #: pid the doctor started (the others are its children)
    server_pid: int | None = None
    #: probe errors and lines that could not be read
    errors: list[str] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        """Pids that produced samples, in order of their first sample."""
        seen: dict[int, None] = {}
        for s in self.samples:
            seen.setdefault(s.pid, None)
        return list(seen)

    def by_pid(self) -> dict[int, list[Sample]]:
        """Samples grouped by process, each list in time order."""
        out: dict[int, list[Sample]] = {}
        for s in sorted(self.samples, key=lambda s: s.t):
            out.setdefault(s.pid, []).append(s)
        return out

    @property
    def start(self) -> float:
        """Time of the first sample or event (0.0 for an empty trace)."""
        times = [s.t for s in self.samples] + [e.t for e in self.events]
        return min(times) if times else 0.0

    def event(self, kind: str) -> Event | None:
        """The first event of ``kind``."""
        return next((e for e in self.events if e.kind == kind), None)

    # -- JSON --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :data:`SCHEMA`)."""
        return {
            "schema": SCHEMA,
            "command": self.command,
            "load_command": self.load_command,
            "port": self.port,
            "server_pid": self.server_pid,
            "processes": [asdict(p) for p in self.processes.values()],
            "events": [asdict(e) for e in self.events],
            "errors": self.errors,
            "stacks": [asdict(s) for s in self.stacks],
            "samples": [_sample_dict(s) for s in self.samples],
        }

    def to_json(self) -> str:
        """The trace as a JSON document."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Rebuild a trace from :meth:`to_dict` output."""
        processes = {}
        for p in data.get("processes", []):
            info = ProcessInfo(
                pid=int(p["pid"]),
                ppid=int(p.get("ppid", 0)),
                argv=tuple(p.get("argv", ())),
                started=float(p.get("started", 0.0)),
                interval=float(p.get("interval", 0.01)),
            )
            processes[info.pid] = info
        return cls(
            samples=[sample_from_record(r) for r in data.get("samples", [])],
            stacks=[stack_from_record(r) for r in data.get("stacks", [])],
            processes=processes,
            events=[
                Event(float(e["t"]), str(e["kind"]), str(e.get("detail", "")))
                for e in data.get("events", [])
            ],
            command=list(data.get("command", [])),
            load_command=data.get("load_command"),
            port=data.get("port"),
            server_pid=data.get("server_pid"),
            errors=list(data.get("errors", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """Rebuild a trace from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


_SAMPLE_FIELDS = {f.name for f in fields(Sample)}


def _sample_dict(s: Sample) -> dict[str, Any]:
    # Only measured fields: most samples lack the socket counts, and JSON has no NaN.
    out: dict[str, Any] = {}
    for name in _SAMPLE_FIELDS:
        value = getattr(s, name)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def sample_from_record(r: dict[str, Any]) -> Sample:
    """A :class:`Sample` from one probe ``"sample"`` record (unknown keys ignored)."""
    kwargs = {k: v for k, v in r.items() if k in _SAMPLE_FIELDS}
    gc_ms = r.get("gc_ms") or (0.0, 0.0, 0.0)
    kwargs["gc_ms"] = (float(gc_ms[0]), float(gc_ms[1]), float(gc_ms[2]))
    return Sample(**kwargs)


def stack_from_record(r: dict[str, Any]) -> StackSample:
    """A :class:`StackSample` from one probe ``"stack"`` record."""
    frames = tuple((str(f[0]), int(f[1]), str(f[2])) for f in r.get("frames", []))
    return StackSample(int(r["pid"]), float(r["t"]), float(r["blocked_ms"]), frames)


def read_records(lines: Iterable[str], trace: Trace) -> None:
    """Add the probe records in ``lines`` (JSON lines) to ``trace``.

    A torn last line (the process was killed mid-write) is recorded in
    ``trace.errors`` and skipped.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            kind = r.get("type")
            if kind == "sample":
                trace.samples.append(sample_from_record(r))
            elif kind == "stack":
                trace.stacks.append(stack_from_record(r))
            elif kind == "meta":
                pid = int(r["pid"])
                trace.processes[pid] = ProcessInfo(
                    pid=pid,
                    ppid=int(r.get("ppid", 0)),
                    argv=tuple(r.get("argv", ())),
                    started=float(r.get("t", 0.0)),
                    interval=float(r.get("interval", 0.01)),
                )
            elif kind == "error":
                trace.errors.append(f"probe {r.get('pid')}: {r.get('error')}")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            trace.errors.append(f"line {number}: unreadable record ({exc.__class__.__name__})")


def read_probe_dir(directory: str | Path, trace: Trace | None = None) -> Trace:
    """Read every ``<pid>.jsonl`` the probes wrote in ``directory`` into a trace."""
    trace = trace if trace is not None else Trace()
    for path in sorted(Path(directory).glob("*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as f:
            read_records(f, trace)
    trace.samples.sort(key=lambda s: (s.t, s.pid))
    trace.stacks.sort(key=lambda s: s.t)
    return trace
