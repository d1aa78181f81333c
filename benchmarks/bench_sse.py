"""Live events under load: sluicegate's Broadcast beside sse-starlette and FastAPI's SSE.

Run ``python -m benchmarks.bench_sse`` from the repository (``--help``; 127.0.0.1 only,
bounded; about ten minutes, ``--quick`` about three). For each load and each server variant of
:mod:`benchmarks.sse_apps`, side by side in one run:

1. a fresh ``uvicorn`` process (one worker, uvloop, httptools) serves the variant;
2. ``--procs`` client processes (:mod:`benchmarks.sse_client`) open the subscriptions
   and count every event (number, latency), on bare asyncio protocols;
3. once the server reports every subscriber, it publishes ``rate × seconds`` events
   of 200 bytes; the server's CPU time (psutil ``cpu_times``) and RSS are read around
   that, and the clients' CPU time too, to show they were not the bottleneck.

Loads (issue 11): 10,000 subscribers at 1 event/s, 1,000 at 20 events/s, and the
second again with 10 % of the subscribers stalled (reading nothing). Then, on Redis
Streams, two workers: events published on worker A, subscribers on both, random
subscribers cut and resuming with ``Last-Event-ID`` on the other worker; every event
is counted (lost, duplicated).

Figures: **offered** = events published × subscribers that read; **delivered** =
distinct events they got; latency is publish (``time.time()`` in the event, in the
server) to receipt (in the client), same clock. **RSS / subscriber** = (peak RSS while
publishing − RSS before anyone connected) / subscribers: kernel socket buffers are not
in RSS. **CPU / event** = server CPU time (user + system) from the first publish to
the end of the drain, divided by the events delivered.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.bench_ledger import redis_server
from benchmarks.bench_slowread import free_port, wait_for_port
from sluicegate.client.sse_swarm import raise_fd_limit
from sluicegate.client.sse_tally import Tally, merged

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * 1024
VARIANTS = {
    "sluicegate": "sluice_app",
    "sse-starlette": "starlette_app",
    "fastapi": "fastapi_app",
}
#: seconds allowed for all subscribers to connect
CONNECT_TIMEOUT = 180.0
#: seconds after the last publish for the last events to arrive
DRAIN = 3.0


@dataclass(frozen=True)
class Load:
    """One load: ``subscribers`` at ``rate`` events/s for ``seconds``."""

    name: str
    subscribers: int
    rate: float
    seconds: float
    mix: str = "fast:1"
    size: int = 200

    @property
    def count(self) -> int:
        """Events to publish."""
        return max(1, round(self.rate * self.seconds))


@dataclass
class Run:
    """What one variant did under one load."""

    variant: str
    load: Load
    connected: int = 0
    connect_seconds: float = 0.0
    published: int = 0
    offered: int = 0
    #: what the subscribers that read (all but the stalled) got, over every client process
    readers: Tally = field(default_factory=lambda: Tally("readers", 0))
    rss_idle: int = 0
    rss_connected: int = 0
    rss_peak: int = 0
    cpu: float = 0.0
    client_cpu: list[float] = field(default_factory=list)
    wall: float = 0.0
    late: float = 0.0
    #: the server's own time per publish call, median and max ms (see sse_apps.Feed)
    fanout: dict[str, float] | None = None
    reconnects: int = 0
    #: the machine's 1-minute load average before and after the run (2 cores, shared)
    loadavg: tuple[float, float] = (0.0, 0.0)
    problem: str | None = None

    @property
    def delivered(self) -> int:
        """Distinct events the readers got."""
        return self.readers.events

    @property
    def lost(self) -> int:
        """Events offered and never delivered (a number skipped, or none received)."""
        return max(self.readers.lost, self.offered - self.delivered)

    @property
    def duplicated(self) -> int:
        """Events the readers got again."""
        return self.readers.duplicated

    def p(self, q: float) -> float | None:
        """Latency percentile, seconds."""
        return self.readers.latency(q)

    @property
    def rss_per_subscriber(self) -> float:
        """Bytes of server RSS per subscriber (peak while publishing, above idle)."""
        return max(0, self.rss_peak - self.rss_idle) / max(1, self.load.subscribers)

    @property
    def cpu_per_event(self) -> float | None:
        """Server CPU seconds per delivered event."""
        return self.cpu / self.delivered if self.delivered else None


def _get(url: str) -> dict[str, Any]:
    # An overloaded server may take long to answer: that is a figure, not a crash.
    with urllib.request.urlopen(url, timeout=60) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def _post(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@contextlib.contextmanager
def uvicorn_server(
    app: str, port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``uvicorn benchmarks.sse_apps:<app>`` on 127.0.0.1:``port``, ended by its pid."""
    argv = [
        sys.executable,
        *("-m", "uvicorn", f"benchmarks.sse_apps:{app}", "--port", str(port)),
        *("--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"),
        *("--backlog", "4096", "--no-access-log", "--log-level", "warning"),
        *("--timeout-graceful-shutdown", "3"),
    ]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        _end(proc)


def _end(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _clients(
    urls: list[str], load: Load, procs: int, workdir: Path, extra: list[str]
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    out = []
    share = [load.subscribers // procs + (i < load.subscribers % procs) for i in range(procs)]
    for i, n in enumerate(share):
        if n == 0:
            continue
        result = workdir / f"client{i}.json"
        argv = [
            sys.executable,
            *("-m", "benchmarks.sse_client", *urls, "--clients", str(n)),
            *("--mix", load.mix, "--out", str(result), "--seed", str(11 + i)),
            *("--max-seconds", str(CONNECT_TIMEOUT + load.seconds + 120)),
            *extra,
        ]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"client{i}.log").open("wb"),
        )
        out.append((proc, result))
    return out


def _collect(run: Run, clients: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
    docs = []
    for proc, _ in clients:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
    for proc, result in clients:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            _end(proc, 1)
            run.problem = "a client process did not stop"
            continue
        try:
            docs.append(json.loads(result.read_text()))
        except (OSError, ValueError):
            run.problem = f"a client process wrote no result (exit {proc.returncode})"
    return docs


def _wait_subscribed(
    stats_urls: list[str], want: int, run: Run, clients: list[tuple[subprocess.Popen[bytes], Path]]
) -> bool:
    started = time.monotonic()
    while time.monotonic() - started < CONNECT_TIMEOUT:
        if sum(_get(u)["subscribers"] for u in stats_urls) >= want:
            run.connect_seconds = time.monotonic() - started
            return True
        if any(p.poll() is not None for p, _ in clients):
            run.problem = "a client process ended early (see its log)"
            return False
        time.sleep(0.25)
    run.problem = f"only {sum(_get(u)['subscribers'] for u in stats_urls)} of {want} subscribed"
    return False


def _tally(run: Run, docs: list[dict[str, Any]]) -> None:
    readers = []
    for doc in docs:
        for c in doc["classes"]:
            if c["label"] == "stall":
                continue  # they read nothing: not offered, not counted
            latencies = array("d")
            path = doc["samples"][c["label"]]
            with open(path, "rb") as f:
                latencies.fromfile(f, os.fstat(f.fileno()).st_size // 8)
            readers.append(Tally.from_dict(c, latencies))
        run.connected += doc["connected"]
    run.readers = merged(readers, "readers")
    run.offered = run.published * run.readers.subscribers


def measure(variant: str, load: Load, procs: int, workdir: Path) -> Run:
    """One variant under one load; see the module docstring."""
    run = Run(variant, load)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    with uvicorn_server(VARIANTS[variant], port, workdir / "server.log") as proc:
        server = psutil.Process(proc.pid)
        time.sleep(0.5)
        run.rss_idle = int(statistics.median(server.memory_info().rss for _ in range(3)))
        clients = _clients([f"{base}/events"], load, procs, workdir, [])
        try:
            if not _wait_subscribed([f"{base}/stats"], load.subscribers, run, clients):
                return run
            time.sleep(1.0)
            run.rss_connected = server.memory_info().rss
            watched = [psutil.Process(p.pid) for p, _ in clients]
            cpu0, ccpu0, t0 = _cpu(server), [_cpu(c) for c in watched], time.monotonic()
            _post(f"{base}/publish?rate={load.rate}&count={load.count}&size={load.size}")
            peak = run.rss_connected
            deadline = time.monotonic() + load.seconds * 3 + 60
            while time.monotonic() < deadline:
                peak = max(peak, server.memory_info().rss)
                stats = _get(f"{base}/stats")
                if not stats["running"] and stats["published"] >= load.count:
                    break
                time.sleep(0.25)
            end = time.monotonic() + DRAIN
            while time.monotonic() < end:
                peak = max(peak, server.memory_info().rss)
                time.sleep(0.25)
            run.cpu = _cpu(server) - cpu0
            run.wall = time.monotonic() - t0
            run.client_cpu = [_cpu(c) - c0 for c, c0 in zip(watched, ccpu0, strict=True)]
            run.rss_peak = peak
            stats = _get(f"{base}/stats")
            run.published, run.late = stats["published"], stats["late"]
            run.fanout = stats.get("fanout")
        finally:
            docs = _collect(run, clients)
        _tally(run, docs)
    return run


def redis_resume(
    subscribers: int, rate: float, count: int, cuts: float, procs: int, workdir: Path
) -> Run | str:
    """Two workers on Redis: publish on A, subscribers on A and B, random cuts, resume."""
    load = Load("2 workers, Redis", subscribers, rate, count / rate, "fast:1")
    run = Run("sluicegate (redis)", load)
    workdir.mkdir(parents=True, exist_ok=True)
    with redis_server() as url:
        if url is None:
            return "skipped: redis-server is not on PATH"
        env = {"SLUICE_REDIS": url}
        pa, pb = free_port(), free_port()
        with (
            uvicorn_server("sluice_redis_app", pa, workdir / "a.log", env) as a,
            uvicorn_server("sluice_redis_app", pb, workdir / "b.log", env) as b,
        ):
            urls = [f"http://127.0.0.1:{p}/events" for p in (pa, pb)]
            extra = ["--reconnect", "--cuts-per-second", str(cuts / procs)]
            clients = _clients(urls, load, procs, workdir, extra)
            try:
                stats_urls = [f"http://127.0.0.1:{p}/stats" for p in (pa, pb)]
                if not _wait_subscribed(stats_urls, subscribers, run, clients):
                    return run
                servers = [psutil.Process(a.pid), psutil.Process(b.pid)]
                cpu0 = sum(_cpu(s) for s in servers)
                _post(f"http://127.0.0.1:{pa}/publish?rate={rate}&count={count}&size=200")
                while True:
                    stats = _get(f"http://127.0.0.1:{pa}/stats")
                    if not stats["running"] and stats["published"] >= count:
                        break
                    time.sleep(0.25)
                time.sleep(DRAIN)
                run.cpu = sum(_cpu(s) for s in servers) - cpu0
                run.published = stats["published"]
            finally:
                docs = _collect(run, clients)
    _tally(run, docs)
    run.reconnects = sum(d["reconnects"] for d in docs)
    return run


# -- report -------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:,.0f} ms" if x >= 0.01 else f"{x * 1000:.1f} ms"


def _us(x: float | None) -> str:
    return "—" if x is None else f"{x * 1e6:,.0f} µs"


def load_table(runs: list[Run]) -> list[str]:
    """Markdown rows, one per run, grouped by load."""
    lines = [
        "| load | server | connected | delivered / offered | lost | dup | latency p50 / p99 "
        "| server CPU per delivered event | RSS per subscriber | client CPU (per process) "
        "| load avg before / after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r.problem and not r.delivered:
            lines.append(
                f"| {r.load.name} | {r.variant} | {r.connected:,} | {r.problem} |||||||"
                f" {r.loadavg[0]:.1f} / {r.loadavg[1]:.1f} |"
            )
            continue
        share = f"{100 * r.delivered / r.offered:.1f} %" if r.offered else "—"
        ccpu = ", ".join(f"{100 * c / r.wall:.0f} %" for c in r.client_cpu) if r.wall else "—"
        lines.append(
            f"| {r.load.name} | {r.variant} | {r.connected:,} | {r.delivered:,} / "
            f"{r.offered:,} ({share}) | {r.lost:,} | {r.duplicated:,} | "
            f"{_ms(r.p(50))} / {_ms(r.p(99))} | {_us(r.cpu_per_event)} | "
            f"{r.rss_per_subscriber / KiB:.1f} KiB | {ccpu} | "
            f"{r.loadavg[0]:.1f} / {r.loadavg[1]:.1f} |"
        )
    return lines


def verdicts(runs: list[Run]) -> list[str]:
    """The issue's targets, checked against this run's figures."""
    out = []
    by = {(r.load.name, r.variant): r for r in runs}
    for r in runs:
        if r.variant != "sluicegate" or "stalled" in r.load.name:
            continue
        whole = r.offered and r.delivered == r.offered
        p99 = r.p(99)
        out.append(
            f"* {r.load.name}: every offered event delivered: **{'yes' if whole else 'no'}** "
            f"({r.delivered:,} of {r.offered:,}); p99 ≤ 100 ms: "
            f"**{'yes' if p99 is not None and p99 <= 0.1 else 'no'}** ({_ms(p99)}); "
            f"RSS per subscriber ≤ 20 KiB: "
            f"**{'yes' if r.rss_per_subscriber <= 20 * KiB else 'no'}** "
            f"({r.rss_per_subscriber / KiB:.1f} KiB)"
        )
        if r.fanout:
            # sluicegate sends each event to every waiting subscriber inside the
            # publish call: its length is the server's share of the latency.
            out.append(
                f"  * the publish call (the fan-out to {r.load.subscribers:,} subscribers, "
                f"sends included), median / max: {r.fanout['median_ms']:,.0f} / "
                f"{r.fanout['max_ms']:,.0f} ms"
            )
        other = by.get((r.load.name, "sse-starlette"))
        if other and other.cpu_per_event and r.cpu_per_event:
            ratio = other.cpu_per_event / r.cpu_per_event
            out.append(
                f"  * CPU per delivered event vs sse-starlette: **{ratio:.1f}x less** "
                f"(target ≥ 3x: **{'met' if ratio >= 3 else 'not met'}**)"
            )
    for r in runs:
        if "stalled" not in r.load.name:
            continue
        base = by.get((r.load.name.replace(", 10 % stalled", ""), r.variant))
        if base is None or base.p(99) is None or r.p(99) is None:
            continue
        move = (r.p(99) or 0) / (base.p(99) or 1) - 1
        growth = max(0, r.rss_peak - r.rss_idle)
        out.append(
            f"* {r.variant}, 10 % stalled: the readers' p99 moved {100 * move:+.0f} % "
            f"({_ms(base.p(99))} → {_ms(r.p(99))}; target < 20 %); server RSS above idle "
            f"{growth / MiB:.1f} MiB"
            + (
                f" (budget 64 KiB × {r.load.subscribers:,} = "
                f"{64 * r.load.subscribers / 1024:.1f} MiB)"
                if r.variant == "sluicegate"
                else " (no per-subscriber budget)"
            )
        )
    return out


def _machine() -> str:
    from benchmarks.__main__ import machine

    return machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sse", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tenth of the subscribers, 10 s")
    ap.add_argument("--seconds", type=float, default=20.0, help="publishing time per run")
    ap.add_argument("--procs", type=int, default=2, help="client processes per run")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--no-redis", action="store_true", help="skip the two-worker Redis run")
    ap.add_argument("--no-stall", action="store_true", help="skip the stalled-subscriber runs")
    ap.add_argument("--redis-events", type=int, default=100_000, help="deliveries to count")
    args = ap.parse_args(argv)
    raise_fd_limit(2 * 10_000 + 1000)  # inherited by the servers and the clients
    scale = 10 if args.quick else 1
    seconds = 10.0 if args.quick else args.seconds
    loads = [
        Load(f"{10_000 // scale:,} × 1/s", 10_000 // scale, 1.0, seconds),
        Load(f"{1_000 // scale:,} × 20/s", 1_000 // scale, 20.0, seconds),
    ]
    if not args.no_stall:
        loads.append(
            Load(
                f"{1_000 // scale:,} × 20/s, 10 % stalled",
                1_000 // scale,
                20.0,
                seconds,
                "fast:9,stall:1",
            )
        )
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    started = dt.datetime.now(dt.UTC)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        for load in loads:
            for variant in variants:
                print(f"bench_sse: {load.name} · {variant} ...", file=sys.stderr, flush=True)
                load_before = os.getloadavg()[0]
                try:
                    run = measure(variant, load, args.procs, Path(tmp) / f"{variant}-{len(runs)}")
                except (OSError, ValueError, KeyError) as exc:
                    run = Run(variant, load, problem=f"run failed: {type(exc).__name__}: {exc}")
                run.loadavg = (load_before, os.getloadavg()[0])
                runs.append(run)
                print(
                    f"  delivered {run.delivered:,}/{run.offered:,}, p99 {_ms(run.p(99))}, "
                    f"{_us(run.cpu_per_event)}/event, {run.rss_per_subscriber / KiB:.1f} KiB/sub"
                    + (f", {run.problem}" if run.problem else ""),
                    file=sys.stderr,
                    flush=True,
                )
        redis: Run | str | None = None
        if not args.no_redis:
            print("bench_sse: two workers on Redis ...", file=sys.stderr, flush=True)
            subs = 100 // (scale if args.quick else 1) or 10
            count = math.ceil(args.redis_events / subs) // (scale if args.quick else 1)
            redis = redis_resume(subs, 100.0, count, 5.0, 1, Path(tmp) / "redis")
    out = [
        f"## Live events (SSE) under load, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m benchmarks.bench_sse{' --quick' if args.quick else ''}` "
        f"({seconds:g} s of publishing per run, {args.procs} client processes, events of "
        "200 bytes), one uvicorn process per run (uvloop, httptools), loopback, on "
        f"{_machine()}. The last column shows how busy the machine was around each "
        "run: absolute figures swing with it, ratios within this run are what to read.",
        "",
        *load_table(runs),
        "",
        *verdicts(runs),
        "",
    ]
    if isinstance(redis, Run):
        r = redis
        out += [
            f"**Two workers on Redis Streams**: {r.load.subscribers} subscribers spread over "
            f"workers A and B, {r.published:,} events published on A at {r.load.rate:g}/s, "
            f"random subscribers cut (5/s) and resuming with `Last-Event-ID` on the other "
            f"worker ({r.reconnects:,} reconnects): delivered "
            f"{r.delivered:,} of {r.offered:,}, lost **{r.lost:,}**, duplicated "
            f"**{r.duplicated:,}**; latency p50 / p99 {_ms(r.p(50))} / {_ms(r.p(99))}"
            + (f"; {r.problem}" if r.problem else "")
            + ".",
            "",
        ]
    elif isinstance(redis, str):
        out += [f"Two workers on Redis: {redis}.", ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
