"""The attack suite: ``python -m benchmarks.attack [--write]`` (127.0.0.1 only).

Reruns what the hardening issue (13) found, against ``sluicegate serve`` serving
:mod:`benchmarks.attack.app` the way a user would run it:

1. bad input: bad numbers over HTTP and on the command line, Range/If-Range variants
   on every response type, path traversal, bad ledger ids and receipt bodies;
2. load: concurrent downloads, every byte checked;
3. aborts: streams reset by their clients; fds and ledger records afterwards;
4. kill -9 of the server under load, in rounds, then the ledger read back;
5. slow-read (``slowhttptest -X``, :mod:`benchmarks.bench_slowread`) and slowloris /
   slow body (``-H`` / ``-B``, :mod:`benchmarks.attack.slowloris`).

Bounded to about 15 minutes on 2 cores (about 6 with the defaults). Prints a Markdown
table; ``--write`` also appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from benchmarks import bench_slowread
from benchmarks.attack import badinput, load, slowloris
from benchmarks.attack.badinput import NINES, Outcome
from benchmarks.attack.rawhttp import exchange, request_bytes

ROOT = Path(__file__).resolve().parents[2]
APP = "benchmarks.attack.app:app"
#: The defences on, with short read timeouts so that the slowloris runs stay short.
FLAGS = ["--stall-timeout", "10s", "--min-rate", "16K", "--header-timeout", "5s"]
FLAGS += ["--body-timeout", "5s"]

Row = tuple[str, str, str, str]  # area, check, result, figures


@contextmanager
def serving(directory: Path, log: Path, flags: list[str]) -> Iterator[tuple[int, psutil.Process]]:
    """``sluicegate serve`` on the attack app; yields (port, process)."""
    port = bench_slowread.free_port()
    os.environ["ATTACK_DIR"] = str(directory)
    argv = [sys.executable, "-m", "sluicegate", "serve", "--app", APP, "--port", str(port)]
    argv += ["--log-level", "warning", *flags]
    with bench_slowread.server(argv, port, log) as proc:
        yield port, psutil.Process(proc.pid)


def verdict(out: Outcome) -> str:
    return "pass" if not out.failures else f"**FAIL** ({len(out.failures)}: {out.failures[0]})"


async def bad_input(port: int) -> list[Row]:
    spooled = await exchange(port, request_bytes("GET", "/spooled"))
    spool_id = spooled.header("transfer-id")
    real = await exchange(port, request_bytes("GET", "/download?size=1K"))
    real_id = real.header("transfer-id")
    rows = []
    for name, coro in (
        ("bad numbers in /download (size, chunk)", badinput.numbers(port)),
        ("Range x If-Range: static files, spool, stream", badinput.ranges(port, spool_id)),
        ("path traversal under /static", badinput.traversal(port)),
        ("bad ledger ids and receipt bodies", badinput.ledger(port, real_id)),
    ):
        start = time.monotonic()
        out = await coro
        rows.append(("bad input", name, verdict(out), f"{out.cases} requests, 0 × 5xx wanted, "
                     f"{time.monotonic() - start:.1f} s"))  # fmt: skip
    return rows


CLI_CASES = [
    ["serve", "--sndbuf", "3G"],
    ["serve", "--max-buffered", NINES],
    ["serve", "--min-rate", NINES],
    ["serve", "--header-timeout", "nan"],
    ["fetch", "http://127.0.0.1:9/", "--rcvbuf", "3G"],
    ["fetch", "http://127.0.0.1:9/", "--limit-rate", NINES],
    ["swarm", "http://127.0.0.1:9/", "--mix", "fast:" + "9" * 5000],
    ["doctor", "--interval", "-1s", "--", "true"],
]


def bad_flags() -> Row:
    """A few bad numbers given to real processes (the full table is a test)."""
    out = Outcome()
    for case in CLI_CASES:
        proc = subprocess.run(
            [sys.executable, "-m", "sluicegate", *case], capture_output=True, text=True, timeout=60
        )
        out.cases += 1
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr:
            out.fail(f"{' '.join(case)[:60]}: exit {proc.returncode}, {len(lines)} lines")
    return ("bad input", "bad numbers on the command line", verdict(out),
            f"{out.cases} commands (the full table: tests/test_cli_numbers.py)")  # fmt: skip


def log_row(log: Path, phase: str) -> Row:
    text = log.read_text(errors="replace")
    tracebacks = text.count("Traceback")
    errors = sum(1 for line in text.splitlines() if line.startswith("ERROR"))
    result = "pass" if tracebacks == 0 else f"**FAIL** ({tracebacks} tracebacks)"
    if tracebacks:
        first = text[text.index("Traceback") :].splitlines()
        print("first traceback in the server log:", *first[:60], sep="\n", file=sys.stderr)
    return ("logs", f"server log during {phase}", result,
            f"{tracebacks} tracebacks, {errors} ERROR lines")  # fmt: skip


async def kill9(tmp: Path, args: argparse.Namespace) -> Row:
    rng = random.Random(13)
    figures = load.KillFigures()
    directory = tmp / "kill9"
    directory.mkdir()
    pending: list[str] = []
    for i in range(args.kill_rounds + 1):
        with serving(directory, tmp / f"kill9-{i}.log", []) as (port, ps):
            if pending:  # read back what the previous round's clients saw whole
                states = await load.read_states(port, pending)
                for state in states.values():
                    if state == "completed":
                        figures.completed += 1
                    else:
                        figures.not_completed[state] = figures.not_completed.get(state, 0) + 1
                pending = []
            if i == args.kill_rounds:
                break
            ids = await load.kill9_round(port, ps.pid, args.kill_transfers, rng)
            figures.rounds += 1
            figures.whole_bodies += len(ids)
            pending = ids
            ps.wait(10)
    lost = sum(figures.not_completed.values())
    result = "pass" if lost == 0 and figures.whole_bodies else f"**FAIL** ({lost} not completed)"
    detail = ", ".join(f"{n} × {s}" for s, n in sorted(figures.not_completed.items()))
    return ("crash", f"kill -9 under load, {figures.rounds} rounds", result,
            f"{figures.whole_bodies} whole bodies seen; {figures.completed} read `completed`"
            + (f"; {detail}" if detail else ""))  # fmt: skip


def slow_read(tmp: Path, args: argparse.Namespace) -> Row:
    ns = argparse.Namespace(
        connections=200, duration=20, download="50M", repeat=2, slowhttptest=args.slowhttptest
    )
    port = bench_slowread.free_port()
    guarded = bench_slowread.GUARDED
    argv = [sys.executable, "-m", "sluicegate", "serve", "--host", "127.0.0.1", "--port"]
    argv += [str(port), "--log-level", "warning", *guarded]
    run = bench_slowread.Run("guarded", "sluicegate serve " + " ".join(guarded))
    bench_slowread.measure(run, argv, port, ns, tmp)
    late = bench_slowread.at(run, run.established, ns.duration - 1.0)
    peak = max(run.established, default=0)
    result = "pass" if late <= 2 else f"**FAIL** ({late} connections still open)"
    return ("slow clients", "slow read, `slowhttptest -X -c 200 -l 20`", result,
            f"{peak} connections at peak, {late} open 19 s in; TCP memory peak "
            f"{max(run.tcp_mem, default=0) / 2**20:.0f} MiB")  # fmt: skip


def slow_send(args: argparse.Namespace) -> list[Row]:
    ns = argparse.Namespace(
        connections=500, duration=20, slowhttptest=args.slowhttptest, only="5s"
    )  # the --header-timeout 5s (-H) and --body-timeout 5s (-B) runs
    rows = []
    for r in slowloris.run_all(ns):
        assert r.limit is not None
        ok = r.longest() <= r.limit * 1.1 + 0.5 and r.keepalive_failed == 0
        rows.append(("slow clients", f"{'slowloris' if r.mode == '-H' else 'slow body'} "
                     f"`slowhttptest {r.mode} -c 500 -l 20`, {r.command}",
                     "pass" if ok else "**FAIL**",
                     f"{r.peak} held at peak, longest {r.longest():.1f} s (limit "
                     f"{r.limit:g} s), keep-alive client {r.keepalive_ok} ok / "
                     f"{r.keepalive_failed} failed"))  # fmt: skip
    return rows


async def main_async(args: argparse.Namespace, tmp: Path) -> list[Row]:
    rows: list[Row] = []
    directory = tmp / "main"
    directory.mkdir()
    log = tmp / "main.log"
    with serving(directory, log, FLAGS) as (port, ps):
        print("... bad input", file=sys.stderr)
        rows += await bad_input(port)
        rows.append(bad_flags())
        print("... load", file=sys.stderr)
        cpu0 = sum(ps.cpu_times()[:2])
        start = time.monotonic()
        out = await load.downloads(port, args.downloads)
        rows.append(("load", f"{args.downloads} concurrent downloads of 256 KiB", verdict(out),
                     f"{out.cases} byte-exact in {time.monotonic() - start:.1f} s; server CPU "
                     f"{sum(ps.cpu_times()[:2]) - cpu0:.1f} s"))  # fmt: skip
        print("... aborts", file=sys.stderr)
        figs = await load.aborts(port, ps, directory / "ledger.db", args.aborts)
        rows.append(("aborts", f"{args.aborts} streams reset (RST) by their clients",
                     verdict(figs.outcome),
                     f"fds {figs.fds_before} before, {figs.fds_peak} peak, {figs.fds_after} "
                     f"after {figs.settle_seconds:.1f} s; threads {figs.threads_before} → "
                     f"{figs.threads_after}; {figs.streaming_records} records left "
                     "`streaming`"))  # fmt: skip
    rows.append(log_row(log, "bad input, load and aborts"))
    print("... kill -9", file=sys.stderr)
    rows.append(await kill9(tmp, args))
    return rows


def markdown(rows: list[Row], args: argparse.Namespace, seconds: float) -> list[str]:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"### Attack suite ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python -m benchmarks.attack --downloads {args.downloads} --aborts {args.aborts} "
        f"--kill-rounds {args.kill_rounds} --kill-transfers {args.kill_transfers}` on "
        f"{os.cpu_count()} cores ({cpu}), 127.0.0.1 only, {seconds / 60:.1f} minutes; the "
        "machine was shared with other work during the run. Server: `sluicegate serve "
        f"--app {APP} {' '.join(FLAGS)}` (the kill -9 rounds: no flags).",
        "",
        "| area | check | result | figures |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {c} | {r} | {f} |" for a, c, r, f in rows]
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--downloads", type=int, default=1000)
    parser.add_argument("--aborts", type=int, default=20000)
    parser.add_argument("--kill-rounds", type=int, default=5)
    parser.add_argument("--kill-transfers", type=int, default=2000, help="most per round")
    parser.add_argument("--no-slow", action="store_true", help="skip the slowhttptest runs")
    parser.add_argument("--slowhttptest", default=shutil.which("slowhttptest") or "")
    parser.add_argument("--write", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sluicegate-attack-") as name:
        tmp = Path(name)
        rows = asyncio.run(main_async(args, tmp))
        if not args.no_slow and args.slowhttptest:
            print("... slow read", file=sys.stderr)
            rows.append(slow_read(tmp, args))
            print("... slowloris, slow body", file=sys.stderr)
            rows += slow_send(args)
    text = "\n".join(markdown(rows, args, time.monotonic() - start))
    print(text)
    if args.write:
        with (ROOT / "BENCHMARKS.md").open("a") as f:
            f.write("\n" + text + "\n")
    return 0 if all(r[2] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
