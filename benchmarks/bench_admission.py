"""Does ``--max-buffered`` hold against stalled readers? Admitted streams and server RSS.

Run ``python -m benchmarks.bench_admission`` (127.0.0.1 only, about a minute). Each
scenario starts a fresh ``sluicegate serve --max-buffered 64M`` (uvicorn, the example
app), records its idle RSS, opens stalled readers (SO_RCVBUF 4 KiB, reading the
response head and then nothing) and samples the server's RSS every 0.1 s while they
are held:

* ``one at a time``: readers of ``/download?size=1G&chunk=1M`` (1 MiB chunks), each
  opened after the previous one's head arrived, 20 ms apart, until 30 in a row are
  refused (or ``--max`` tried);
* ``burst``: ``--burst`` (500) such readers opened at once;
* ``idle SSE``: ``--burst`` readers of ``/events?rate=0.2`` at once, then again 2 s
  later on the same server (what a cold path costs idle streams), and the per-stream
  overhead: RSS growth per held idle stream, which sluicegate does not count.

Target (issue 13): RSS growth within 1.25 x the budget plus admitted streams x the
per-stream overhead. Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.bench_slowread import free_port, server

MiB = 2**20
BUDGET = "64M"
DOWNLOAD = "/download?size=1G&chunk=1M"
EVENTS = "/events?rate=0.2&size=200"


@dataclass
class Run:
    """What one scenario saw."""

    name: str
    tried: int = 0
    admitted: int = 0
    refused: int = 0
    other: int = 0
    idle: int = 0
    peak: int = 0
    held_rss: int = 0  # RSS 3 s after the last arrival, streams still held
    cpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def growth(self) -> int:
        return self.peak - self.idle


async def stalled(port: int, path: str) -> tuple[str, socket.socket]:
    """Open a reader that reads the head, then nothing; ('200' | '503' | other, sock)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    timeout = 10.0
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        await loop.sock_sendall(sock, request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1024), timeout)
            if not data:
                break
            head += data
    except (OSError, TimeoutError):
        return "error", sock
    return head[9:12].decode("latin-1") or "error", sock


class Sampler:
    """RSS of the server every 0.1 s, in the benchmark's loop."""

    def __init__(self, ps: psutil.Process) -> None:
        self.ps, self.peak = ps, ps.memory_info().rss

    async def run(self) -> None:
        while True:
            self.peak = max(self.peak, self.ps.memory_info().rss)
            await asyncio.sleep(0.1)


def count(run: Run, status: str) -> None:
    run.tried += 1
    if status == "200":
        run.admitted += 1
    elif status == "503":
        run.refused += 1
    else:
        run.other += 1


async def one_at_a_time(run: Run, port: int, socks: list[socket.socket], most: int) -> None:
    refused_in_a_row = 0
    while run.tried < most and refused_in_a_row < 30:
        status, sock = await stalled(port, DOWNLOAD)
        socks.append(sock)
        count(run, status)
        refused_in_a_row = refused_in_a_row + 1 if status != "200" else 0
        await asyncio.sleep(0.02)


async def burst(run: Run, port: int, socks: list[socket.socket], n: int, path: str) -> None:
    results = await asyncio.gather(*(stalled(port, path) for _ in range(n)))
    for status, sock in results:
        socks.append(sock)
        count(run, status)


def scenario(name: str, args: argparse.Namespace, tmp: Path) -> list[Run]:
    port = free_port()
    argv = [sys.executable, "-m", "sluicegate", "serve", "--port", str(port)]
    argv += ["--log-level", "warning", "--max-buffered", BUDGET]
    runs: list[Run] = []
    with server(argv, port, tmp / f"{name}.log") as proc:
        ps = psutil.Process(proc.pid)
        time.sleep(1.0)
        idle = ps.memory_info().rss
        cpu0 = sum(ps.cpu_times()[:2])

        async def main() -> None:
            sampler = Sampler(ps)
            task = asyncio.create_task(sampler.run())
            socks: list[socket.socket] = []
            try:
                run = Run(name, idle=idle)
                runs.append(run)
                if name == "one at a time":
                    await one_at_a_time(run, port, socks, args.max)
                elif name == "burst":
                    await burst(run, port, socks, args.burst, DOWNLOAD)
                else:
                    await burst(run, port, socks, args.burst, EVENTS)
                    await asyncio.sleep(2.0)
                    again = Run("idle SSE, 2 s later", idle=idle)
                    runs.append(again)
                    await burst(again, port, socks, args.burst, EVENTS)
                await asyncio.sleep(3.0)  # streams settle; RSS while they are held
                if name == "idle SSE":
                    # idle streams hold next to nothing: RSS per held stream is the
                    # overhead sluicegate does not count (connection, tasks, metrics)
                    held = sum(r.admitted for r in runs)
                    rss = ps.memory_info().rss
                    runs[0].notes.append(
                        f"overhead {(rss - idle) / max(1, held) / 1024:.1f} KiB/stream"
                        f" ({held} idle SSE streams held, RSS +{(rss - idle) / MiB:.1f} MiB)"
                    )
                for r in runs:
                    r.held_rss = ps.memory_info().rss
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for r in runs:
                    r.peak = sampler.peak
                for s in socks:
                    s.close()

        asyncio.run(main())
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        for r in runs:
            r.cpu = cpu
    return runs


def table(runs: list[Run], overhead_kib: float) -> str:
    budget = 64 * MiB
    lines = [
        "| scenario | tried | admitted | 503 | other | idle RSS MiB | peak growth MiB"
        " | growth 3 s after MiB | target MiB | within | server CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in runs:
        target = 1.25 * budget + r.admitted * overhead_kib * 1024
        ok = "yes" if r.growth <= target else "**no**"
        lines.append(
            f"| {r.name} | {r.tried} | {r.admitted} | {r.refused} | {r.other}"
            f" | {r.idle / MiB:.0f} | {r.growth / MiB:.1f} | {(r.held_rss - r.idle) / MiB:.1f}"
            f" | {target / MiB:.1f} | {ok} | {r.cpu:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--max", type=int, default=400, help="one at a time: most tried")
    args = parser.parse_args()
    if not 1 <= args.burst <= 2000 or not 1 <= args.max <= 2000:
        parser.error("--burst and --max must be 1 to 2000")
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[Run] = []
        for name in ("idle SSE", "one at a time", "burst"):
            runs += scenario(name, args, Path(tmp))
    note = next(n for r in runs for n in r.notes)
    overhead_kib = float(note.split()[1])
    print(f"## Admission: --max-buffered {BUDGET} against stalled readers (bench_admission)\n")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}"
        f" {psutil.cpu_count()} cores, Python {platform.python_version()}, uvicorn via"
        " `sluicegate serve`, 127.0.0.1; the machine was shared with other work during"
        " the run. Command: `python -m benchmarks.bench_admission"
        f" --burst {args.burst} --max {args.max}`.\n"
    )
    print(table(runs, overhead_kib))
    print(f"\nPer-stream overhead (not counted by sluicegate): {note}. Target = 1.25 x 64 MiB")
    print("+ admitted x that overhead. Readers: SO_RCVBUF 4 KiB, read the head, then nothing.")
    print(f"Downloads: `{DOWNLOAD}`; idle SSE: `{EVENTS}`.")


if __name__ == "__main__":
    main()
