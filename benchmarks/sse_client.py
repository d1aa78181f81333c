"""One load-client process of ``bench_sse.py``: an SSE swarm that stops when told.

::

    python -m benchmarks.sse_client URL [URL ...] --clients 5000 --out run.json

It runs :func:`sluicegate.client.sse_swarm` on uvloop until its standard input closes
(the benchmark closes it once the publisher is done and the last events had time to
arrive) or ``--max-seconds`` pass, then writes the counts as JSON to ``--out`` and
each class's latency samples to ``<out>.<class>.f64`` (raw doubles), so that the
benchmark can take percentiles over several client processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from sluicegate.client.sse_swarm import sse_swarm


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


async def run(args: argparse.Namespace) -> dict[str, object]:
    stop = asyncio.Event()
    _stop_on_stdin_eof(asyncio.get_running_loop(), stop)
    result = await sse_swarm(
        args.urls,
        clients=args.clients,
        mix=args.mix,
        duration=args.max_seconds,
        reconnect=args.reconnect,
        cuts_per_second=args.cuts_per_second,
        stop=stop,
        seed=args.seed,
    )
    out = Path(args.out)
    doc: dict[str, object] = result.to_dict()
    samples: dict[str, str] = {}
    for tally in result.classes:
        path = out.with_name(f"{out.name}.{tally.label.replace('=', '-')}.f64")
        with path.open("wb") as f:
            tally.latencies.tofile(f)
        samples[tally.label] = str(path)
    doc["samples"] = samples
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sse_client")
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--mix", default="fast:1")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--reconnect", action="store_true")
    ap.add_argument("--cuts-per-second", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        runner = asyncio.Runner()
    with runner:
        doc = runner.run(run(args))
    Path(args.out).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
