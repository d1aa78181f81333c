"""The live-feed demo's load command: subscribers, then publishing, then the counts.

The doctor runs it as its ``--on-port`` command (see :mod:`sluicegate.demo.load` for
the download scenarios)::

    python -m sluicegate.demo.feedload http://127.0.0.1:PORT/feed/drop_oldest \\
        --clients 1000 --slow 10 --rate 10 --size 4096 --seconds 5 --out run.json

It opens the subscriptions (:func:`~sluicegate.client.sse_swarm`, ``--slow`` % of
them reading 1 KiB/s, all reconnecting with ``Last-Event-ID`` when cut), waits until
the server counts them all, asks it to publish, waits for the last events, and
writes the swarm's counts and the server's ``/feed/stats`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from sluicegate.client.sse_swarm import sse_swarm
from sluicegate.demo.load import write_run
from sluicegate.errors import ConfigError

__all__ = ["main", "run_feed_load"]

#: seconds given to the subscribers to connect, and to the last events to arrive
CONNECT_TIMEOUT = 60.0
DRAIN = 1.0


async def run_feed_load(
    url: str,
    *,
    clients: int,
    slow: int,
    slow_rate: int,
    rate: float,
    size: int,
    seconds: float,
) -> dict[str, Any]:
    """Subscribe ``clients`` to ``url`` (``slow`` % of them slow), publish, count."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    policy = parts.path.rstrip("/").rsplit("/", 1)[-1]
    mix = f"fast:{100 - slow},slow={slow_rate}:{slow}" if 0 < slow < 100 else "fast:1"
    stop = asyncio.Event()
    swarm = asyncio.create_task(
        sse_swarm([url], clients=clients, mix=mix, duration=CONNECT_TIMEOUT + seconds * 4 + 60,
                  reconnect=True, stop=stop)
    )  # fmt: skip
    # The swarm checks its settings before its first await: one turn of the loop
    # turns a bad one into this run's error (one line), not a task that fails unseen.
    await asyncio.sleep(0)
    if swarm.done():
        swarm.result()
    doc: dict[str, Any] = {"policy": policy, "clients": clients, "slow_share": slow}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        started = time.monotonic()
        while time.monotonic() - started < CONNECT_TIMEOUT and not swarm.done():
            stats = (await http.get("/feed/stats")).json()
            if stats["subscribers"][policy] >= clients:
                break
            await asyncio.sleep(0.1)
        doc["connect_seconds"] = round(time.monotonic() - started, 3)
        query: dict[str, str | float] = {"policy": policy, "rate": rate, "size": size}
        query["seconds"] = seconds
        (await http.post("/feed/start", params=query)).raise_for_status()
        await asyncio.sleep(seconds)
        behind = time.monotonic() + seconds / 2
        while (await http.get("/feed/stats")).json()["running"]:
            # A publisher held back (wait) gets half as long again, not forever.
            if time.monotonic() > behind:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(DRAIN)
        stop.set()
        doc["swarm"] = (await swarm).to_dict()
        doc["server"] = (await http.get("/feed/stats")).json()
    return doc


def main(argv: list[str] | None = None) -> int:
    """Run one feed load and write its JSON; exit 0 whatever the feed did (it is data)."""
    parser = argparse.ArgumentParser(prog="python -m sluicegate.demo.feedload")
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=10, help="percent of slow subscribers")
    parser.add_argument("--slow-rate", type=int, default=1024, help="bytes/s a slow one reads")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    def measure() -> dict[str, Any]:
        return asyncio.run(
            run_feed_load(
                args.url,
                clients=args.clients,
                slow=args.slow,
                slow_rate=args.slow_rate,
                rate=args.rate,
                size=args.size,
                seconds=args.seconds,
            )
        )

    return write_run(args.out, measure, (ConfigError, httpx.HTTPError))


if __name__ == "__main__":
    sys.exit(main())
