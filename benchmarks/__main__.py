"""Run every benchmark and write ``BENCHMARKS.md``: ``python -m benchmarks [--quick|--full]``.

Figures are medians of repeated runs made side by side in this one invocation, so
that their ratios mean something on a noisy machine; absolute numbers do not travel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path

import psutil

from benchmarks import bench_cpu, engine

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import uvicorn

    return (
        f"{cpu}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"uvicorn {uvicorn.__version__} (httptools, uvloop)"
    )


def _earlier_runs(path: Path) -> str:
    """What ``path`` held before this run, under a heading, to follow the new run."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "\n"
    text = text.removeprefix("# Benchmarks\n").lstrip("\n")
    marker = "## Earlier runs\n"
    # The last run's own part joins the earlier ones, newest first.
    last, _, older = text.partition(marker)
    return "\n\n" + marker + "\n" + last.rstrip() + "\n\n" + older.lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs, for trying things out")
    ap.add_argument("--full", action="store_true", help="the article's 20 chunks in (c)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("-o", "--output", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    repeat = max(3, args.repeat) if not args.quick else 1
    total = 2 * 1024 * engine.MiB if not args.quick else 256 * engine.MiB
    rows = 2_000_000 if not args.quick else 200_000
    chunks = 20 if args.full else (6 if not args.quick else 2)

    started = dt.datetime.now(dt.UTC)
    # Every run is kept: this one goes on top, the file's earlier runs below it.
    earlier = _earlier_runs(Path(args.output))
    out = [
        "# Benchmarks",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC with `python -m benchmarks"
        f"{' --quick' if args.quick else ''}{' --full' if args.full else ''}` on: {machine()}.",
        "",
        "Every figure is a median of the runs listed beside it; variants ran interleaved in",
        "the same invocation against the same uvicorn process, the client in another",
        "process. `bare` is a hand-written ASGI `send()` loop, `starlette` Starlette's",
        "`StreamingResponse`, `sluice` sluicegate's `StreamResponse`.",
        "",
    ]
    steps = [
        # Loopback throughput swings ±15 % run to run here: more runs, cheap ones.
        ("throughput", lambda: engine.table(engine.throughput(max(repeat, 7), total), "bare")),
        (
            "async rows",
            lambda: engine.table(
                engine.rows(repeat, rows, rows, "async-rows"), "starlette", "{:,.0f}"
            ),
        ),
        (
            "sync rows",
            lambda: engine.table(
                engine.rows(repeat, rows, rows // 20, "sync-rows"), "starlette", "{:,.0f}"
            ),
        ),
        ("memory", lambda: engine.table(engine.memory(repeat, chunks), "sluice", "{:,.1f}")),
        ("probe", lambda: engine.table(engine.probe_overhead(repeat), "without probe")),
        (
            "cpu per GB",
            lambda: bench_cpu.section(
                max(10, repeat) if not args.quick else 2, total // 2 if not args.quick else total
            ),
        ),
    ]
    for name, step in steps:
        print(f"benchmark: {name} ...", file=sys.stderr, flush=True)
        out += step()
        Path(args.output).write_text("\n".join(out) + earlier)
    if not args.quick:
        print("benchmark: slow-read attack ...", file=sys.stderr, flush=True)
        slowread = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "bench_slowread.py")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
        )
        out += [slowread.stdout.strip() or f"slow-read run failed: {slowread.stderr.strip()}", ""]
        Path(args.output).write_text("\n".join(out) + earlier)
    print("benchmark: ledger ...", file=sys.stderr, flush=True)
    ledger = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ledger.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    out += ["### transfer ledger", "", "```", ledger.stdout.strip() or ledger.stderr.strip(), "```"]
    Path(args.output).write_text("\n".join(out) + earlier)
    print("benchmark: live events (SSE) ...", file=sys.stderr, flush=True)
    sse = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_sse", *(["--quick"] if args.quick else [])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
    )
    out += [sse.stdout.strip() or f"SSE run failed: {sse.stderr.strip()[-2000:]}", ""]
    Path(args.output).write_text("\n".join(out) + earlier)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
