"""The demo's load command: one slow :func:`~sluicegate.client.fetch`, then the server's stats.

The doctor runs it as its ``--on-port`` command (as the article runs ``curl
--limit-rate 10M`` under ``clinic doctor --on-port``), so it is a process of its own::

    python -m sluicegate.demo.load URL --limit-rate 10M --window 6 --out run.json

``--window`` stops reading after that many seconds (the bounded runs); the JSON it
writes holds the fetch summary, whether the window stopped it, and the record the
server keeps of the stream at ``/stats`` (bytes produced, chunk times, drops).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sluicegate.client import FetchCounters, fetch
from sluicegate.errors import ConfigError

__all__ = ["main", "run_load", "write_run"]


async def run_load(
    url: str,
    *,
    limit_rate: float | None,
    window: float | None = None,
    pause_after: float | None = None,
    pause_for: float | None = None,
) -> dict[str, Any]:
    """Fetch ``url`` like a slow reader; stop after ``window`` seconds if given."""
    counters = FetchCounters()
    started = time.monotonic()
    try:
        async with asyncio.timeout(window):
            result = await fetch(
                url,
                limit_rate=limit_rate,
                pause_after=pause_after,
                pause_for=pause_for,
                counters=counters,
                check=False,
            )
    except TimeoutError:
        return {
            "status": counters.status,
            "bytes": counters.body_bytes,
            "size": counters.size,
            "duration": round(time.monotonic() - started, 6),
            "ttfb": None if counters.ttfb is None else round(counters.ttfb, 6),
            "complete": False,
            "error": None,
            "stopped_by_window": True,
        }
    out = result.to_dict()
    out["stopped_by_window"] = False
    return out


def _stats(url: str, scenario: str) -> dict[str, Any] | None:
    """The server's last record of ``scenario`` from ``/stats``, if it keeps one."""
    parts = urlsplit(url)
    try:
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/stats", timeout=5) as r:
            records = json.loads(r.read())
    except (OSError, ValueError):
        return None
    mine = [r for r in records if isinstance(r, dict) and r.get("scenario") == scenario]
    return mine[-1] if mine else None


def main(argv: list[str] | None = None) -> int:
    """Run one load and write its JSON; exit 0 whatever the transfer did (it is data)."""
    parser = argparse.ArgumentParser(prog="python -m sluicegate.demo.load")
    parser.add_argument("url")
    parser.add_argument("--limit-rate", type=float, default=None)
    parser.add_argument("--window", type=float, default=None)
    parser.add_argument("--pause-after", type=float, default=None)
    parser.add_argument("--pause-for", type=float, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    def measure() -> dict[str, Any]:
        fetched = asyncio.run(
            run_load(
                args.url,
                limit_rate=args.limit_rate,
                window=args.window,
                pause_after=args.pause_after,
                pause_for=args.pause_for,
            )
        )
        scenario = urlsplit(args.url).path.strip("/")
        return {"fetch": fetched, "server": _stats(args.url, scenario)}

    return write_run(args.out, measure)


def write_run(
    out: str,
    measure: Callable[[], dict[str, Any]],
    errors: tuple[type[Exception], ...] = (ConfigError,),
) -> int:
    """Write ``measure()``'s JSON to ``out`` and return 0, or 2 after one ``Error:`` line.

    The exit status of both load commands (this one and
    :mod:`sluicegate.demo.feedload`): a run that went badly is data, written all the
    same; only a setting the run could not start with (one of ``errors``) fails it.
    """
    try:
        doc = measure()
    except errors as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    Path(out).write_text(json.dumps(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
