"""Server CPU per GB for big chunks: ``python benchmarks/bench_cpu.py [--runs N]``.

On loopback the client, not the server, sets the pace, so wall-clock throughput says
little about what a stack costs. This benchmark charges each variant with the CPU
time (user + system, from ``psutil``) its server process spent while serving one
download, and divides by the bytes sent:

``bare``       a hand-written ASGI ``send()`` loop (the floor)
``starlette``  Starlette's ``StreamingResponse``
``sluice``     sluicegate's ``StreamResponse``
``node``       Node's ``Readable.from(gen).pipe(res)``, when ``node`` is installed
``noturn``     with ``--turn-cost``: sluicegate with the turn of the loop after
               every message taken out (``benchmarks.apps_without_turn``), to show
               what that turn costs
``bare+turn``  with ``--turn-cost``: the bare loop with a turn after every message,
               the least any server-side code can cost that notices a client that left
               before it makes the next chunk (issue 14)

The Python variants share one uvicorn process (httptools, uvloop) and one async
generator (``benchmarks.apps``); Node serves the same chunk from an async generator
(``benchmarks/node_pipe.js``). curl reads each download into ``/dev/null``. Runs are
interleaved, variant by variant, chunk size by chunk size, so that a noisy neighbour
hits them all alike; the figures are medians, every run is listed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import engine

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024
CHUNKS = (64 * KiB, 1024 * KiB)
UVICORN = ("--http", "httptools", "--loop", "uvloop")


@contextlib.contextmanager
def node_server() -> Iterator[tuple[int, psutil.Process] | None]:
    """Start ``benchmarks/node_pipe.js``; yield (port, process), or None without node."""
    node = shutil.which("node")
    if node is None:
        yield None
        return
    port = engine._free_port()
    proc = subprocess.Popen(
        [node, str(ROOT / "benchmarks" / "node_pipe.js"), str(port), "--quiet"], cwd=ROOT
    )
    with engine.running(proc, port):
        yield port, psutil.Process(proc.pid)


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU seconds the process (all its threads) has used so far.

    Read from the scheduler's own count (``/proc/PID/task/*/schedstat``, nanoseconds)
    where there is one: ``cpu_times`` counts in ticks of 10 ms, which is 5 % of a
    whole 64 KiB download here. Elsewhere, user + system time from psutil.
    """
    total = 0
    try:
        for task in os.scandir(f"/proc/{proc.pid}/task"):
            # A thread may end between the listing and the read.
            with contextlib.suppress(FileNotFoundError), open(f"{task.path}/schedstat") as f:
                total += int(f.read().split()[0])
    except FileNotFoundError:
        t = proc.cpu_times()
        return t.user + t.system
    return total / 1e9


#: CPUs for the servers and for curl, or None to let the kernel choose.
PIN: dict[str, list[int]] | None = None


#: Where the servers and curl run (``--placement``):
#:
#: ``apart``   servers on CPU 0, curl on CPU 1: each side sleeps and is woken across
#:             cores as the other keeps up; on a virtual machine every such wake-up
#:             costs the woken side CPU, so a run lands in one of two regimes (one
#:             wake-up per message or few) and the same download costs 0.2 to 1.0 CPU
#:             s per GB from run to run.
#: ``shared``  servers and curl on CPU 0: one side runs until it must wait, then the
#:             other; few wake-ups, so the figure is mostly the code's own cost (and
#:             the loopback TCP work both sides do), and runs agree closely.
#: ``free``    wherever the kernel puts them (it moves them between the two).
PLACEMENTS: dict[str, dict[str, list[int]] | None] = {
    "apart": {"server": [0], "client": [1]},
    "shared": {"server": [0], "client": [0]},
    "free": None,
}


def pin(placement: str) -> None:
    """Place the servers and curl as ``placement`` says (see :data:`PLACEMENTS`)."""
    global PIN
    PIN = PLACEMENTS[placement] if (os.cpu_count() or 1) >= 2 else None


def download(port: int, path: str) -> int:
    """Fetch ``path`` with curl into /dev/null; return the bytes curl received."""
    pin = ["taskset", "-c", ",".join(map(str, PIN["client"]))] if PIN else []
    out = subprocess.run(
        [
            *pin,
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--output",
            "/dev/null",
            "--write-out",
            "%{size_download}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return int(out.stdout)


def measure(proc: psutil.Process, port: int, path: str, total: int) -> tuple[float, float]:
    """One run: (server CPU seconds per GB, wall seconds) for downloading ``path``."""
    before = cpu_seconds(proc)
    t0 = time.perf_counter()
    got = download(port, path)
    wall = time.perf_counter() - t0
    # uvicorn may still be finishing the response's bookkeeping: give it a moment,
    # cheaply, so its last bit of CPU lands in this run, not the next.
    time.sleep(0.05)
    used = cpu_seconds(proc) - before
    if got != total:
        raise RuntimeError(f"{path}: got {got} bytes, expected {total}")
    return used / (total / 1e9), wall


@contextlib.contextmanager
def without_turn_server(wanted: bool) -> Iterator[tuple[int, psutil.Process] | None]:
    """Start ``benchmarks.apps_without_turn`` on uvicorn if ``wanted``; else yield None."""
    if not wanted:
        yield None
        return
    with engine.server(args=UVICORN, app="benchmarks.apps_without_turn:app") as started:
        yield started


def run(
    runs: int, total: int, placement: str = "apart", *, turn_cost: bool = False
) -> list[engine.Result]:
    """Measure every variant ``runs`` times per chunk size, interleaved; one Result each."""
    results = {
        chunk: engine.Result(
            f"CPU per GB: {total // engine.MiB} MiB in {chunk // KiB} KiB chunks, curl reads"
            f" ({placement})",
            "server CPU s per GB",
        )
        for chunk in CHUNKS
    }
    walls: dict[int, dict[str, list[float]]] = {c: {} for c in CHUNKS}
    with (
        engine.server(args=UVICORN) as (py_port, py_proc),
        node_server() as node,
        without_turn_server(turn_cost) as noturn,
    ):
        targets: dict[str, tuple[int, psutil.Process, str]] = {
            v: (py_port, py_proc, f"/{v}?kind=bytes&chunk={{chunk}}&count={{count}}")
            for v in engine.VARIANTS
        }
        if noturn is not None:
            targets["noturn"] = (*noturn, "/sluice?kind=bytes&chunk={chunk}&count={count}")
            bare_turn = "/bare?turn=1&kind=bytes&chunk={chunk}&count={count}"
            targets["bare+turn"] = (py_port, py_proc, bare_turn)
        if node is not None:
            targets["node"] = (node[0], node[1], "/?chunk={chunk}&count={count}&rate=1")
        for port, proc, template in targets.values():  # warm up
            if PIN:
                for thread in proc.threads():  # every thread: affinity is per thread
                    os.sched_setaffinity(thread.id, PIN["server"])
            download(port, template.format(chunk=64 * KiB, count=64))
        for _ in range(runs):
            for chunk in CHUNKS:
                count = total // chunk
                for variant, (port, proc, template) in targets.items():
                    path = template.format(chunk=chunk, count=count)
                    per_gb, wall = measure(proc, port, path, count * chunk)
                    results[chunk].runs.setdefault(variant, []).append(per_gb)
                    walls[chunk].setdefault(variant, []).append(wall)
    for chunk, res in results.items():
        res.values = {v: statistics.median(r) for v, r in res.runs.items()}
        res.notes.append(
            "Wall seconds per download (median): "
            + ", ".join(f"{v} {statistics.median(w):.2f}" for v, w in walls[chunk].items())
            + "."
        )
        if node is None:
            res.notes.append("`node` is not installed: no Node variant.")
    return list(results.values())


def section(
    runs: int,
    total: int,
    placements: tuple[str, ...] = ("apart", "shared"),
    *,
    turn_cost: bool = False,
) -> list[str]:
    """The Markdown for BENCHMARKS.md: one table per placement and chunk size, ratios
    vs Starlette."""
    lines: list[str] = []
    for placement in placements:
        pin(placement)
        for res in run(runs, total, placement, turn_cost=turn_cost):
            lines += engine.table(res, "starlette", "{:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="interleaved runs per variant")
    ap.add_argument("--mib", type=int, default=1024, help="MiB per download")
    ap.add_argument(
        "--placement",
        default="apart,shared",
        help="comma-separated, each of apart, shared, free (see PLACEMENTS; default: apart,shared)",
    )
    ap.add_argument(
        "--turn-cost",
        action="store_true",
        help="add sluicegate without its turn of the loop per message, and a bare loop with one",
    )
    args = ap.parse_args(argv)
    if args.runs < 1 or args.mib < 1:
        ap.error("--runs and --mib must be at least 1")
    placements = tuple(p.strip() for p in args.placement.split(",") if p.strip())
    if not placements or any(p not in PLACEMENTS for p in placements):
        ap.error(f"--placement takes a list of {', '.join(PLACEMENTS)}")
    lines = section(args.runs, args.mib * engine.MiB, placements, turn_cost=args.turn_cost)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
