"""Does the server's RSS come back after load? ``sluicegate serve`` with and without
``--return-memory`` (mmap threshold fixed, ``malloc_trim`` when idle) and its variants.

Run ``python -m benchmarks.bench_rss_return`` (127.0.0.1 only, about a minute). For
each setting it starts ``sluicegate serve`` (uvicorn, the example app), records the
idle RSS, runs ``--streams`` downloads of ``/download?size=8M&chunk=1M`` (1 MiB
chunks) with ``--concurrency`` at a time, each read to its end, then samples RSS every
0.5 s for 10 s after the last stream ended. Target: RSS back within 25 % of idle plus
10 MiB within 10 s. Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.bench_slowread import free_port, server

MiB = 2**20
TUNABLE = "glibc.malloc.mmap_threshold=262144"


@dataclass
class Run:
    """RSS figures of one server setting."""

    name: str
    flags: list[str]
    env: dict[str, str] = field(default_factory=dict)
    idle: int = 0
    peak: int = 0
    after: list[tuple[float, int]] = field(default_factory=list)  # (s after the end, RSS)
    failures: int = 0
    cpu_seconds: float = 0.0

    @property
    def target(self) -> float:
        return self.idle * 1.25 + 10 * MiB

    def back_within(self) -> float | None:
        """Seconds after the end until RSS was within target (and stayed), or None."""
        for i, (t, _) in enumerate(self.after):
            if all(rss <= self.target for _, rss in self.after[i:]):
                return t
        return None


async def one_download(port: int, path: str, sem: asyncio.Semaphore) -> bool:
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            got = 0
            while chunk := await reader.read(1 << 18):
                got += len(chunk)
            return head.startswith(b"HTTP/1.1 200") and got == length
        finally:
            writer.close()


async def load(port: int, streams: int, concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)
    path = "/download?size=8M&chunk=1M"
    results = await asyncio.gather(
        *(one_download(port, path, sem) for _ in range(streams)), return_exceptions=True
    )
    return sum(1 for r in results if r is not True)


def measure(run: Run, args: argparse.Namespace, tmp: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "sluicegate", "serve", "--port", str(port)]
    argv += ["--log-level", "warning", *run.flags]
    saved = dict(os.environ)
    os.environ.update(run.env)  # server() starts the process with this environment
    try:
        _measure(run, args, argv, port, tmp)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(run: Run, args: argparse.Namespace, argv: list[str], port: int, tmp: Path) -> None:
    with server(argv, port, tmp / f"{run.name}.log") as proc:
        ps = psutil.Process(proc.pid)
        time.sleep(1.0)
        run.idle = ps.memory_info().rss
        cpu0 = sum(ps.cpu_times()[:2])
        peak = [run.idle]
        done = False

        async def sample() -> None:
            while not done:
                peak.append(ps.memory_info().rss)
                await asyncio.sleep(0.1)

        async def main() -> int:
            nonlocal done
            sampler = asyncio.create_task(sample())
            failures = await load(port, args.streams, args.concurrency)
            done = True
            await sampler
            return failures

        run.failures = asyncio.run(main())
        end = time.monotonic()
        run.peak = max(peak)
        while (t := time.monotonic() - end) <= args.after:
            run.after.append((t, ps.memory_info().rss))
            time.sleep(0.5)
        run.cpu_seconds = sum(ps.cpu_times()[:2]) - cpu0


def report(runs: list[Run], args: argparse.Namespace) -> list[str]:
    lines = [
        "### RSS after load (`--return-memory`)",
        "",
        f"`python -m benchmarks.bench_rss_return --streams {args.streams} --concurrency "
        f"{args.concurrency}`: `sluicegate serve` (uvicorn, httptools), {args.streams} "
        f"downloads of `/download?size=8M&chunk=1M` ({args.concurrency} at a time, read "
        "as fast as possible), RSS sampled every 0.5 s for 10 s after the last one ended. "
        "Target: within 25 % of idle + 10 MiB within 10 s.",
        "",
        "| server | idle | peak | 1 s after | 5 s after | 10 s after | target | met, after "
        "| failed downloads | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]

    def at(run: Run, t: float) -> str:
        rss = min(run.after, key=lambda s: abs(s[0] - t))[1] if run.after else 0
        return f"{rss / MiB:.0f} MiB"

    for r in runs:
        back = r.back_within()
        met = f"yes, {back:.1f} s" if back is not None else "**no**"
        env = "".join(f"`{k}={v}` " for k, v in r.env.items())
        lines.append(
            f"| {env}`serve {' '.join(r.flags)}` | {r.idle / MiB:.0f} MiB | {r.peak / MiB:.0f} MiB "
            f"| {at(r, 1)} | {at(r, 5)} | {at(r, 10)} | {r.target / MiB:.0f} MiB | {met} "
            f"| {r.failures} | {r.cpu_seconds:.1f} s |"
        )
    lines += [
        "",
        "`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=262144` fixes the mmap threshold "
        "the way `mallopt(M_MMAP_THRESHOLD)` does, without the idle `malloc_trim`; "
        "`--return-memory` (the default) fixes the threshold at 32 MiB (chunks stay on the "
        "heap) and trims when idle; `SLUICEGATE_MMAP_THRESHOLD=0` leaves the threshold "
        "dynamic (the trim alone), `=256K` mmaps every chunk. Server CPU covers the load and the "
        "10 s after it. *Met, after* is the first sample from which RSS stayed "
        "within the target (0.0 s: already at the first sample after the end). "
        "Shared 2-core machine; other work ran at the same time. RSS is the server "
        "process's (psutil).",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--after", type=float, default=10.0, help="seconds sampled after")
    args = parser.parse_args(argv)
    runs = [
        Run("keep", ["--keep-memory"]),
        # What mallopt(M_MMAP_THRESHOLD) alone does, set by glibc itself at start.
        Run("threshold", ["--keep-memory"], {"GLIBC_TUNABLES": TUNABLE}),
        Run("return", ["--return-memory"]),  # 32 MiB threshold and the idle trim
        Run("trim", ["--return-memory"], {"SLUICEGATE_MMAP_THRESHOLD": "0"}),
        Run("mmap", ["--return-memory"], {"SLUICEGATE_MMAP_THRESHOLD": "256K"}),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        for run in runs:
            print(f"... serve {' '.join(run.flags)}", file=sys.stderr)
            measure(run, args, Path(tmp))
            print(f"    idle {run.idle / MiB:.0f} peak {run.peak / MiB:.0f} MiB", file=sys.stderr)
    print("\n".join(report(runs, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
