"""A slow-read attack (``slowhttptest -X``) against sluicegate's defences, side by side.

Run ``python benchmarks/bench_slowread.py`` (``--help`` for options; 127.0.0.1 only,
about 4 minutes). The servers, all serving the example app's ``/download`` (a
:class:`~sluicegate.StreamResponse`):

* **guarded**: ``sluicegate serve --stall-timeout 10s --min-rate 16K`` with serve's
  socket defaults (``TCP_NOTSENT_LOWAT`` 32K, autotuned ``SO_SNDBUF``);
* **sndbuf 64K**: the same with ``--sndbuf 64K --notsent-lowat off`` (the fixed send
  buffer this benchmark used before ``TCP_NOTSENT_LOWAT``);
* **autotuned**: the same with ``--sndbuf auto --notsent-lowat off``: the kernel's
  buffers, the reference for a single download's speed;
* **plain**: the same app on plain ``uvicorn`` (``python -m uvicorn``): no guard, the
  kernel's buffers.

First it times normal downloads alone, interleaved across all the servers (so that
a busy spell on this shared machine hits them alike). Then, server by server, it
runs ``slowhttptest -X`` (200 connections reading 32 bytes every 5 s through a
512–1024 byte window, for 30 s) at ``/download?size=50M`` while normal downloads run
back to back, and samples every 0.5 s: the server's RSS (psutil), the kernel's TCP
memory (``/proc/net/sockstat`` ``TCP mem`` pages × page size: the whole machine, both
ends of loopback) and the server's established connections. It prints a Markdown
section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 2**20

# 16K/s: a client that slow frees one 128 KiB server buffer in 8 s, under the 10 s
# stall timeout, so a stall is cut at 10 s (with --min-rate 4K a wait could last 32 s).
GUARDED = ["--stall-timeout", "10s", "--min-rate", "16K"]
#: ``sluicegate serve`` variants: name -> socket flags added to GUARDED.
SERVE_VARIANTS = {
    "guarded": [],
    "sndbuf 64K": ["--sndbuf", "64K", "--notsent-lowat", "off"],
    "autotuned": ["--sndbuf", "auto", "--notsent-lowat", "off"],
}
NAMES = (*SERVE_VARIANTS, "plain")


@dataclass
class Run:
    """What one server did under the attack."""

    name: str
    command: str
    argv: list[str] = field(default_factory=list)
    port: int = 0
    alone_mbps: list[float] = field(default_factory=list)
    attacked_mbps: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    tcp_mem: list[int] = field(default_factory=list)
    established: list[int] = field(default_factory=list)
    send_mem: list[list[int]] = field(default_factory=list)
    idle_rss: int = 0
    idle_tcp_mem: int = 0
    attack: list[dict[str, int]] = field(default_factory=list)
    log_lines: dict[str, int] = field(default_factory=dict)


def tcp_mem_bytes() -> int:
    """The kernel's TCP memory now, in bytes (``/proc/net/sockstat``)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * PAGE
    raise RuntimeError("no TCP line in /proc/net/sockstat")


def send_memory(port: int) -> list[int]:
    """Kernel send memory (``ss`` ``skmem`` ``w``: queued bytes with their overhead) of
    every established socket listening side ``port`` has, one figure per socket."""
    try:
        out = subprocess.run(
            ["ss", "-tmnH", "state", "established", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(m) for m in re.findall(r"skmem:\(.*?\bw(\d+)", out)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def server(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    # A file, not a pipe: a server logging one line per cut would fill a pipe nobody
    # reads and block.
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def download(port: int, size: str) -> float:
    """One normal download read as fast as possible; MB/s (10^6 bytes per second)."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        start = time.perf_counter()
        head = f"GET /download?size={size} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode())
        got = 0
        buf = bytearray(1 << 20)
        while n := sock.recv_into(buf):
            got += n
        elapsed = time.perf_counter() - start
    return got / elapsed / 1e6


def established(proc: psutil.Process, port: int) -> int:
    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr and c.laddr[1] == port)


def read_stats(csv_path: Path) -> list[dict[str, int]]:
    if not csv_path.exists():
        return []
    rows = []
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            clean = {k.strip().lower(): v.strip() for k, v in row.items() if k}
            with contextlib.suppress(ValueError):
                rows.append({k: int(v) for k, v in clean.items()})
    return rows


def alone(runs: list[Run], args: argparse.Namespace, out: Path) -> None:
    """Time ``args.repeat`` normal downloads per server, interleaved, all servers up.

    With ``args.pin`` every server runs on the first CPU and this client on the
    second: left to the scheduler, one long-lived server process may keep sharing a
    core with the client and another not, which skewed one server against another by
    up to 1.6x in a run, whatever their settings.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = args.pin and len(cpus) >= 2
    mine = set(cpus)
    with contextlib.ExitStack() as stack:
        for run in runs:
            proc = stack.enter_context(server(run.argv, run.port, out / f"{run.name}-alone.log"))
            if pin:
                os.sched_setaffinity(proc.pid, {cpus[0]})
        if pin:
            os.sched_setaffinity(0, {cpus[1]})
        try:
            for run in runs:
                download(run.port, args.download)  # warm-up: page faults, caches
            for _ in range(args.repeat):
                for run in runs:
                    run.alone_mbps.append(download(run.port, args.download))
        finally:
            if pin:
                os.sched_setaffinity(0, mine)


def measure(run: Run, args: argparse.Namespace, out: Path) -> None:
    """Run the attack against ``run``'s server, sampling it; count its log lines."""
    log = out / f"{run.name}.log"
    port = run.port
    with server(run.argv, port, log) as proc:
        ps = psutil.Process(proc.pid)
        time.sleep(1.0)
        run.idle_rss, run.idle_tcp_mem = ps.memory_info().rss, tcp_mem_bytes()
        download(port, args.download)  # warm-up: first-touch page faults, caches
        prefix = out / run.name.replace(" ", "-")
        attack = subprocess.Popen(
            [
                args.slowhttptest,
                "-X",
                "-g",
                "-o",
                str(prefix),
                "-c",
                str(args.connections),
                "-r",
                "100",
                "-l",
                str(args.duration),
                "-w",
                "512",
                "-y",
                "1024",
                "-n",
                "5",
                "-z",
                "32",
                "-k",
                "1",
                "-p",
                "3",
                "-u",
                f"http://127.0.0.1:{port}/download?size=50M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stop = threading.Event()

        def downloads() -> None:
            time.sleep(3.0)  # let the attack open its connections first
            while not stop.is_set():
                run.attacked_mbps.append(download(port, args.download))

        loader = threading.Thread(target=downloads, daemon=True)
        loader.start()
        started = time.monotonic()
        try:
            while attack.poll() is None and time.monotonic() - started < args.duration + 15:
                run.times.append(time.monotonic() - started)
                run.rss.append(ps.memory_info().rss)
                run.tcp_mem.append(tcp_mem_bytes())
                run.established.append(established(ps, port))
                run.send_mem.append(send_memory(port))
                time.sleep(0.5)
        finally:
            stop.set()
            if attack.poll() is None:
                attack.terminate()
                try:
                    attack.wait(5)
                except subprocess.TimeoutExpired:
                    attack.kill()
                    attack.wait(5)
            loader.join(60)
        run.attack = read_stats(prefix.with_suffix(".csv"))
    text = log.read_text(errors="replace")
    run.log_lines = {
        "returned without completing": text.count("returned without completing"),
        "Task exception was never retrieved": text.count("Task exception was never retrieved"),
    }


def fmt_mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def at(run: Run, series: list[int], t: float) -> int:
    """The sample of ``series`` nearest to ``t`` seconds into the attack."""
    if not series:
        return 0
    i = min(range(len(run.times)), key=lambda k: abs(run.times[k] - t))
    return series[i]


def report(runs: list[Run], args: argparse.Namespace) -> list[str]:
    checkpoints = [5.0, args.duration / 2, args.duration - 1.0]
    lines = [
        "### Slow-read attack (`slowhttptest -X`)",
        "",
        f"`slowhttptest -X -c {args.connections} -r 100 -l {args.duration} -w 512 -y 1024 "
        "-n 5 -z 32 -k 1 -p 3` (each connection reads 32 bytes every 5 s through a "
        "512–1024 byte window) against `/download?size=50M` on 127.0.0.1, while normal "
        f"downloads of {args.download} run back to back from 3 s into the attack. "
        "Server-side samples every 0.5 s.",
        "",
        "| | " + " | ".join(r.name for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("server", [f"`{r.command}`" for r in runs])
    for t in checkpoints:
        row(
            f"connections open at the server, {t:.0f} s into the attack",
            [str(at(r, r.established, t)) for r in runs],
        )
    row("server RSS idle", [fmt_mib(r.idle_rss) for r in runs])
    row("server RSS peak", [fmt_mib(max(r.rss, default=0)) for r in runs])
    row(
        f"server RSS {checkpoints[-1]:.0f} s into the attack",
        [fmt_mib(at(r, r.rss, checkpoints[-1])) for r in runs],
    )
    row("kernel TCP memory idle", [fmt_mib(r.idle_tcp_mem) for r in runs])
    row("kernel TCP memory peak", [fmt_mib(max(r.tcp_mem, default=0)) for r in runs])
    row(
        "kernel TCP memory mean over the attack",
        [fmt_mib(statistics.fmean(r.tcp_mem) if r.tcp_mem else 0) for r in runs],
    )
    row(
        f"kernel TCP memory {checkpoints[-1]:.0f} s into the attack",
        [fmt_mib(at(r, r.tcp_mem, checkpoints[-1])) for r in runs],
    )

    def per_socket(r: Run, t: float) -> str:
        # The median socket is an attacker's: 200 of them against one normal download.
        i = min(range(len(r.times)), key=lambda k: abs(r.times[k] - t)) if r.times else 0
        sockets = r.send_mem[i] if r.send_mem else []
        if not sockets:
            return "-"
        return f"{statistics.median(sockets) / 1024:,.0f} / {max(sockets) / 1024:,.0f} KiB"

    row(
        "server sockets' send memory, all, peak (`ss` skmem `w`)",
        [fmt_mib(max((sum(m) for m in r.send_mem), default=0)) for r in runs],
    )
    row(
        "server send memory per connection 5 s into the attack, median / max",
        [per_socket(r, 5.0) for r in runs],
    )
    row(
        "attack connections slowhttptest saw closed (its view, at the end)",
        [str(r.attack[-1].get("closed", "?")) if r.attack else "?" for r in runs],
    )
    row(
        f"normal download alone, MB/s (median of {args.repeat}, interleaved across servers"
        + (", servers on one CPU and the client on another)" if args.pin else ")"),
        [f"{statistics.median(r.alone_mbps):,.0f}" for r in runs],
    )
    reference = next((r for r in runs if r.name == "autotuned"), None)
    if reference is not None:
        base = statistics.median(reference.alone_mbps)
        row(
            "alone / autotuned alone (target for guarded ≥ 95 %)",
            [f"{statistics.median(r.alone_mbps) / base:.0%}" for r in runs],
        )
    row(
        "normal download during the attack, MB/s (median; downloads)",
        [
            f"{statistics.median(r.attacked_mbps):,.0f} ({len(r.attacked_mbps)})"
            if r.attacked_mbps
            else "-"
            for r in runs
        ],
    )
    row(
        "during / alone (target ≥ 90 %)",
        [
            f"{statistics.median(r.attacked_mbps) / statistics.median(r.alone_mbps):.0%}"
            if r.attacked_mbps
            else "-"
            for r in runs
        ],
    )
    for key in ("returned without completing", "Task exception was never retrieved"):
        row(f"server log lines: “{key}”", [str(r.log_lines.get(key, 0)) for r in runs])
    lines += [
        "",
        "*Connections open at the server* counts the server process's ESTABLISHED "
        "sockets (the attack's and the one normal download). The guarded server resets "
        "a cut connection (`RST`), but slowhttptest only notices when its own receive "
        "buffer runs dry (32 bytes per 5 s), so its *closed* count lags far behind. "
        "Kernel TCP memory is the whole machine's (`/proc/net/sockstat`: both ends of "
        "loopback, other programs too); the idle row is the floor it started from. "
        "Server RSS includes each stream's current 1 MiB chunk of the example "
        "`/download` (its default `chunk`), until the stream is cut. MB/s are loopback "
        "figures on a 2-core machine, where one download swings by 2–3x from run to run "
        "when the scheduler decides whether server and client share a core (hence the "
        "pinning of the alone downloads, unless `--no-pin`): compare medians. Every "
        "alone download of every server is listed below.",
        "",
    ]
    for r in runs:
        lines.append(f"- {r.name} alone, MB/s: " + ", ".join(f"{v:,.0f}" for v in r.alone_mbps))
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--duration", type=int, default=30, help="attack seconds")
    parser.add_argument("--download", default="200M", help="size of each normal download")
    parser.add_argument("--repeat", type=int, default=15, help="downloads alone per server")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave the downloads alone to the scheduler (default: servers on one CPU, "
        "the client on another)",
    )
    parser.add_argument("--slowhttptest", default=shutil.which("slowhttptest") or "")
    parser.add_argument(
        "--servers",
        default=",".join(NAMES),
        help=f"comma-separated, from: {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--guarded-flags",
        default="",
        help="more serve flags for the guarded server, to try a setting (e.g. "
        "'--notsent-lowat 32K')",
    )
    args = parser.parse_args(argv)
    if not args.slowhttptest:
        print("slowhttptest is not installed (apt-get install slowhttptest)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if not names or any(n not in NAMES for n in names):
        parser.error(f"--servers: choose from {', '.join(NAMES)}")
    runs = [
        make_run(name, args.guarded_flags.split() if name == "guarded" else []) for name in names
    ]
    with tempfile.TemporaryDirectory(prefix="bench-slowread-") as tmp:
        print("... alone: " + ", ".join(names), file=sys.stderr)
        alone(runs, args, Path(tmp))
        for run in runs:
            print(f"... attack: {run.name}: {run.command}", file=sys.stderr)
            measure(run, args, Path(tmp))
    print("\n".join(report(runs, args)))
    return 0


def make_run(name: str, extra: list[str]) -> Run:
    """The server ``name`` (one of NAMES) on a free port, with ``extra`` serve flags."""
    py = sys.executable
    port = free_port()
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if name == "plain":
        argv = [py, "-m", "uvicorn", "sluicegate.cli.examples:app", *common]
        shown = "uvicorn sluicegate.cli.examples:app"
    else:
        flags = [*GUARDED, *SERVE_VARIANTS[name], *extra]
        argv = [py, "-m", "sluicegate", "serve", *common, *flags]
        shown = "sluicegate serve " + " ".join(flags)
    return Run(name, shown, argv, port)


if __name__ == "__main__":
    sys.exit(main())
