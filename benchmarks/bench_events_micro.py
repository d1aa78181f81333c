"""CPU per delivered SSE event, in-process: ``python -m benchmarks.bench_events_micro``.

:mod:`benchmarks.bench_sse` measures whole servers (uvicorn, the kernel, the client);
what sluicegate itself costs per delivered event drowns there in the machine's noise.
This runs ``subscribers`` real :class:`~sluicegate.events.EventStream` responses on one
:class:`~sluicegate.events.Broadcast` in-process, each against an ASGI ``send`` that
takes every message at once, publishes ``events`` events one at a time (each delivered
to everyone, and every pump back to waiting, before the next: a feed at a modest
rate), and reports process CPU microseconds per delivered event: publish, fan-out,
channel, pump and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluicegate.events import Broadcast, EventStream

SETTLE_TURNS = 3
SCOPE = {"type": "http", "method": "GET", "path": "/events", "headers": [], "query_string": b""}


class _Server:
    """ASGI ``send`` that accepts at once and counts events; ``receive`` that waits."""

    def __init__(self) -> None:
        self.events = 0

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.events += message["body"].count(b"\n\n") if b"data:" in message["body"] else 0

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


async def measure(subscribers: int, events: int, policy: str) -> float:
    """CPU µs per delivered event, one run."""
    server = _Server()
    async with Broadcast(["t"]) as broadcast:
        streams = [
            EventStream(broadcast.feed("t", policy=policy), heartbeat=None)  # type: ignore[arg-type]
            for _ in range(subscribers)
        ]
        tasks = [asyncio.create_task(s(SCOPE, server.receive, server.send)) for s in streams]
        while broadcast.subscribers("t") < subscribers:  # noqa: ASYNC110 (counted turns)
            await asyncio.sleep(0)

        async def publish_all(count: int) -> None:
            for i in range(count):
                target = server.events + subscribers
                await broadcast.publish("t", {"n": i, "text": "x" * 40}, event="tick")
                turns = 0
                while server.events < target:
                    await asyncio.sleep(0)
                    turns += 1
                    if turns > 1000:
                        raise RuntimeError("events were not delivered")
                # Let every pump settle into waiting, as it would between events at a
                # real rate; publishing while pumps are still mid-turn measures a
                # burst, not a feed.
                for _ in range(SETTLE_TURNS):
                    await asyncio.sleep(0)

        await publish_all(20)  # warm up
        before = server.events
        t0 = time.process_time()
        await publish_all(events)
        cpu = time.process_time() - t0
        delivered = server.events - before
        for s in streams:
            s.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    return cpu / delivered * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--events", type=int, default=200, help="events published per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--policy", default="drop_oldest", help="the feed's slow policy")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        run: Any = uvloop.run
    else:
        run = asyncio.run
    values = [run(measure(args.subscribers, args.events, args.policy)) for _ in range(args.runs)]
    shown = ", ".join(f"{v:.2f}" for v in values)
    print(
        f"{args.subscribers} subscribers x {args.events} events ({args.policy}, {args.loop}): "
        f"CPU µs per delivered event median {statistics.median(values):.2f} ({shown})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
