"""The streaming engine's benchmarks, each a side-by-side run on one uvicorn.

a. throughput: 2 GiB in 64 KiB chunks to a fast client;
b. rows: ~50-byte rows yielded one by one, from an async and from a sync generator;
c. memory: the article's scenario, 20 MB chunks made at 20 MB/s for a client that
   reads 10 MB/s: peak server RSS above idle.

Every figure is the median of ``repeat`` runs, and ratios compare runs made in this
same invocation. The servers run in a subprocess (``benchmarks.apps``) so that the
client never shares their GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from sluicegate.client import fetch

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
VARIANTS = ("bare", "starlette", "sluice")


@dataclass
class Result:
    """One benchmark's medians per variant, in the unit it names."""

    name: str
    unit: str
    values: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def table(res: Result, baseline: str, fmt: str = "{:,.2f}") -> list[str]:
    """``res`` as Markdown: medians, every run, and ratios to the ``baseline`` variant."""
    lines = [f"### {res.name}", "", f"| variant | {res.unit} (median) | runs | vs {baseline} |"]
    lines.append("|---|---:|---|---:|")
    base = res.values[baseline]
    for name, value in res.values.items():
        runs = ", ".join(fmt.format(r) for r in res.runs[name])
        ratio = value / base if base else float("nan")
        lines.append(f"| {name} | {fmt.format(value)} | {runs} | {ratio:.2f}x |")
    lines += [""] + [f"{note}" for note in res.notes] + [""]
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    app: str = "benchmarks.apps:app",
) -> Iterator[tuple[int, psutil.Process]]:
    """Start ``app`` on uvicorn (``args`` added); yield (port, process).

    The server is stopped by its pid on the way out.
    """
    port = _free_port()
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
            *args,
        ],
        cwd=ROOT,
        env=env,
    )
    with running(proc, port):
        yield port, psutil.Process(proc.pid)


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes], port: int) -> Iterator[None]:
    """Wait until ``proc`` listens on ``port``; on the way out stop it (SIGINT, by pid)."""
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_all(port: int, path: str) -> tuple[int, float]:
    """GET ``path`` and read to the end as fast as possible: (bytes, seconds)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        n = 0
        t0 = time.perf_counter()
        while k := s.recv_into(buf):
            n += k
        return n, time.perf_counter() - t0


def _median_runs(port: int, paths: dict[str, str], repeat: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {v: [] for v in paths}
    for _ in range(repeat):
        # Interleave the variants so drift on a noisy machine hits them all alike.
        for variant, path in paths.items():
            _, seconds = read_all(port, path)
            runs[variant].append(seconds)
    return runs


def throughput(repeat: int, total: int = 2 * 1024 * MiB, chunk: int = 64 * 1024) -> Result:
    """a. GB/s for ``total`` bytes in ``chunk``-sized chunks to a fast client."""
    count = total // chunk
    paths = {v: f"/{v}?kind=bytes&chunk={chunk}&count={count}" for v in VARIANTS}
    res = Result(f"a. {total // MiB} MiB in {chunk // 1024} KiB chunks, fast client", "GB/s")
    with server() as (port, _):
        read_all(port, paths["bare"].replace(f"count={count}", "count=100"))  # warm up
        runs = _median_runs(port, paths, repeat)
    for v, seconds in runs.items():
        res.runs[v] = [total / s / 1e9 for s in seconds]
        res.values[v] = statistics.median(res.runs[v])
    return res


def rows(repeat: int, count: int, slow_count: int, kind: str) -> Result:
    """b. rows/s for ~50-byte rows yielded one by one (``kind`` async-rows or sync-rows)."""
    res = Result(f"b. {count:,} rows of 50 B, {kind.split('-')[0]} generator", "rows/s")
    counts = {"bare": count, "starlette": slow_count if kind == "sync-rows" else count}
    counts["sluice"] = count
    paths = {v: f"/{v}?kind={kind}&count={counts[v]}" for v in VARIANTS}
    with server() as (port, _):
        read_all(port, paths["sluice"].replace(f"count={count}", "count=1000"))
        runs = _median_runs(port, paths, repeat)
    for v, seconds in runs.items():
        res.runs[v] = [counts[v] / s for s in seconds]
        res.values[v] = statistics.median(res.runs[v])
    if counts["starlette"] != count:
        res.notes.append(
            f"Starlette ran {counts['starlette']:,} rows per run (one thread hop per row makes "
            f"{count:,} take minutes); rows/s compares rates."
        )
    return res


class RssSampler:
    """Sample a process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, proc: psutil.Process, interval: float = 0.01) -> None:
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic() - t0, self.proc.memory_info().rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def idle_rss(proc: psutil.Process, seconds: float = 0.5) -> int:
    """The server's resting RSS: the median over a short quiet spell."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(proc.memory_info().rss)
        time.sleep(0.02)
    return int(statistics.median(samples))


def memory(repeat: int, chunks: int, chunk: int = 20 * 1000 * 1000) -> Result:
    """c. Peak RSS above idle: ``chunks`` chunks at 20 MB/s, a client reading 10 MB/s."""
    rate = 20 * 1000 * 1000
    client_rate = 10 * 1000 * 1000
    res = Result(
        f"c. {chunks} x 20 MB chunks made at 20 MB/s, client reads 10 MB/s", "MB above idle"
    )
    durations: dict[str, list[float]] = {v: [] for v in VARIANTS}
    res.runs = {v: [] for v in VARIANTS}
    for _ in range(repeat):
        for v in VARIANTS:
            # A fresh server per run: the allocator's high-water mark from one run
            # must not hide the next one's growth.
            with server() as (port, proc):
                read_all(port, f"/{v}?kind=bytes&chunk=1000&count=10")
                idle = idle_rss(proc)
                url = f"http://127.0.0.1:{port}/{v}?kind=bytes&chunk={chunk}&count={chunks}&rate={rate}"
                with RssSampler(proc) as sampler:
                    result = asyncio.run(fetch(url, limit_rate=client_rate, check=False))
                if not result.complete:
                    raise RuntimeError(f"{v}: the slow download did not complete: {result.error}")
                res.runs[v].append((sampler.peak - idle) / 1e6)
                durations[v].append(result.duration)
    for v in VARIANTS:
        res.values[v] = statistics.median(res.runs[v])
    res.notes.append(
        "Duration (median s): "
        + ", ".join(f"{v} {statistics.median(d):.1f}" for v, d in durations.items())
        + ". sluicegate makes the next chunk only once the last one has nearly gone, so it"
        " holds one chunk instead of two, and its producer's 1 s per chunk is not overlapped"
        " with sending."
    )
    return res


def probe_overhead(repeat: int, total: int = 1024 * MiB, chunk: int = 64 * 1024) -> Result:
    """The doctor's probe: sluicegate's 64 KiB throughput with and without it injected."""
    import tempfile

    from sluicegate.doctor.run import DoctorConfig, probe_env

    count = total // chunk
    path = f"/sluice?kind=bytes&chunk={chunk}&count={count}"
    res = Result(f"doctor probe: {total // MiB} MiB in 64 KiB chunks, sluicegate", "GB/s")
    res.runs = {"without probe": [], "with probe (10 ms)": []}
    with tempfile.TemporaryDirectory() as samples:
        env = probe_env({}, DoctorConfig(command=["-"]), Path(samples))
        env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ.get("PYTHONPATH", "")
        # Two servers side by side, requests interleaved: drift hits both alike.
        with server() as (plain, _), server(env) as (probed, _):
            read_all(plain, path.replace(f"count={count}", "count=100"))
            read_all(probed, path.replace(f"count={count}", "count=100"))
            for _ in range(repeat):
                for name, port in (("without probe", plain), ("with probe (10 ms)", probed)):
                    _, seconds = read_all(port, path)
                    res.runs[name].append(total / seconds / 1e9)
    res.values = {k: statistics.median(v) for k, v in res.runs.items()}
    return res
