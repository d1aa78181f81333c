"""Clients that behave like real slow readers: :func:`fetch`, :func:`swarm`, :func:`sse_swarm`.

::

    from sluicegate.client import fetch

    result = await fetch("http://127.0.0.1:8000/big", limit_rate="64K",
                         pause_after=1, pause_for=19)
"""

from __future__ import annotations

from sluicegate.client.fetch import ExitCode, FetchCounters, FetchResult, fetch
from sluicegate.client.ratelimit import TokenBucket
from sluicegate.client.schedule import Event, Schedule, parse_schedule
from sluicegate.client.sse_swarm import SSESwarmResult, sse_swarm
from sluicegate.client.sse_tally import Tally
from sluicegate.client.swarm import ClassStats, MixEntry, SwarmResult, parse_mix, swarm
from sluicegate.units import parse_duration, parse_rate, parse_size

__all__ = [
    "ClassStats",
    "Event",
    "ExitCode",
    "FetchCounters",
    "FetchResult",
    "MixEntry",
    "SSESwarmResult",
    "Schedule",
    "SwarmResult",
    "Tally",
    "TokenBucket",
    "fetch",
    "parse_duration",
    "parse_mix",
    "parse_rate",
    "parse_schedule",
    "parse_size",
    "sse_swarm",
    "swarm",
]
