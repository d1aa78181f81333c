"""Many SSE subscribers at once: what ``sluicegate swarm --sse`` runs.

``clients`` subscribers (:mod:`sluicegate.client.sse_reader` protocols, all in this
process) split by the same mix as the HTTP swarm (``fast``, ``slow=RATE``, ``stall``),
for at most ``duration`` seconds or until ``stop`` is set. Every event's number and
publish time are counted (see :mod:`sluicegate.client.sse_tally`): delivered, lost,
duplicated, and publish-to-receipt latency percentiles per class.

With ``reconnect``, a dropped subscriber comes back with ``Last-Event-ID``, to the next
URL of ``urls`` (several workers sharing one feed); ``cuts_per_second`` drops random
subscribers on purpose, to test exactly that. Loopback only unless ``allow_remote``.

::

    result = await sse_swarm(["http://127.0.0.1:8000/events"], clients=1000,
                             mix="fast:9,stall:1", duration=10)
    print(result.all.events, result.all.lost, result.all.latency(99))
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.client.fetch import parse_url
from sluicegate.client.sse_reader import Behaviour, Subscriber, subscribe
from sluicegate.client.sse_tally import Sequence as Numbers
from sluicegate.client.sse_tally import Tally, merged
from sluicegate.client.swarm import MixEntry, allocate, check_target, parse_mix
from sluicegate.errors import ConfigError

__all__ = ["SSESwarmResult", "raise_fd_limit", "sse_swarm"]

#: connections opening at once: a burst of thousands overflows a listen backlog
CONNECT_CONCURRENCY = 256
#: seconds the subscribers get to finish once the run ends, before being cancelled
STOP_GRACE = 2.0
#: file descriptors the process keeps for itself beside the subscribers
FD_SPARE = 64


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-file limit towards ``needed`` (up to the hard limit); return it."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return needed if soft == resource.RLIM_INFINITY else int(soft)


@dataclass(slots=True)
class SSESwarmResult:
    """Counts per mix class; :attr:`all` sums them."""

    urls: list[str]
    duration: float
    classes: list[Tally]

    @property
    def all(self) -> Tally:
        """Every class together."""
        return merged(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """What ``sluicegate swarm --sse --json`` prints."""
        total = self.all.to_dict()
        total.pop("label")
        return {
            "urls": self.urls,
            "duration": round(self.duration, 3),
            **total,
            "classes": [c.to_dict() for c in self.classes],
        }


def _targets(urls: Sequence[str], allow_remote: bool) -> tuple[list[tuple[str, int]], str]:
    if not urls:
        raise ConfigError("no URL to subscribe to")
    targets = []
    paths = set()
    for url in urls:
        check_target(url, allow_remote)
        parts = parse_url(url)
        targets.append((parts.hostname or "127.0.0.1", parts.port or 80))
        paths.add(parts.path + (f"?{parts.query}" if parts.query else ""))
    if len(paths) != 1:
        raise ConfigError("every URL of an SSE swarm must have the same path and query")
    return targets, paths.pop() or "/"


async def _cutter(live: set[Subscriber], per_second: float, rng: random.Random) -> None:
    while True:
        await asyncio.sleep(rng.expovariate(per_second))
        if live:
            victim = rng.choice(tuple(live))
            if victim.transport is not None:
                victim.transport.abort()


async def sse_swarm(
    urls: Sequence[str],
    *,
    clients: int = 10,
    mix: str | Sequence[MixEntry] = "fast:1",
    duration: float = 10.0,
    reconnect: bool = False,
    cuts_per_second: float = 0.0,
    allow_remote: bool = False,
    stop: asyncio.Event | None = None,
    seed: int = 11,
) -> SSESwarmResult:
    """Run ``clients`` SSE subscribers against ``urls`` (round robin); return the counts.

    Raises :class:`~sluicegate.errors.ConfigError` on bad arguments, a non-loopback
    target without ``allow_remote``, or more subscribers than the open-file limit
    allows (it is raised to the hard limit first).
    """
    targets, path = _targets(urls, allow_remote)
    entries = parse_mix(mix) if isinstance(mix, str) else tuple(mix)
    if not entries:
        raise ConfigError("bad mix: no entries")
    if clients < 1:
        raise ConfigError(f"bad clients {clients}: need at least 1")
    if not (duration > 0 and math.isfinite(duration)):
        raise ConfigError(f"bad duration {duration}: must be a finite number of seconds > 0")
    if not (cuts_per_second >= 0 and math.isfinite(cuts_per_second)):
        raise ConfigError(f"bad cuts per second {cuts_per_second}: must be >= 0")
    limit = raise_fd_limit(clients + FD_SPARE)
    if clients + FD_SPARE > limit:
        raise ConfigError(
            f"bad clients {clients}: the open-file limit is {limit} (raise it with ulimit -n)"
        )
    counts = allocate([e.weight for e in entries], clients)
    tallies = [Tally(e.label, n) for e, n in zip(entries, counts, strict=True)]
    stop = stop or asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    live: set[Subscriber] = set()
    started = time.monotonic()
    tasks: list[asyncio.Task[Any]] = []
    subscribers: list[tuple[Tally, Numbers]] = []
    # Interleave the classes, so the slow ones are spread over the connect ramp.
    order = [(e, t) for e, t, n in zip(entries, tallies, counts, strict=True) for _ in range(n)]
    random.Random(seed).shuffle(order)
    for entry, tally in order:
        behaviour = Behaviour(entry.kind, entry.rate)
        start = len(tasks) % len(targets)
        mine = [*targets[start:], *targets[:start]]
        numbers = Numbers()
        subscribers.append((tally, numbers))
        tasks.append(
            asyncio.create_task(
                subscribe(
                    mine,
                    path,
                    behaviour,
                    tally,
                    stop,
                    numbers=numbers,
                    gate=gate,
                    reconnect=reconnect,
                    live=live,
                )
            )
        )
    cutter = (
        asyncio.create_task(_cutter(live, cuts_per_second, random.Random(seed)))
        if cuts_per_second
        else None
    )
    try:
        # Until the duration, the stop signal, or every subscriber has ended by itself.
        with_stop: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        everyone: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait([with_stop, everyone], timeout=duration, return_when="FIRST_COMPLETED")
        with_stop.cancel()
    finally:
        stop.set()
        if cutter is not None:
            cutter.cancel()
        for proto in list(live):
            if proto.transport is not None:
                proto.transport.abort()
        # Those still connecting when the run ended are cut short; their counts stay.
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE) if tasks else ((), ())
        for task in pending:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome  # a subscriber ends by stop or by its connection: this is a bug
    for tally, numbers in subscribers:
        tally.add(numbers)
    return SSESwarmResult(list(urls), time.monotonic() - started, tallies)
