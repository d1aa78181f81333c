"""Many clients at once, in one process: fast readers, slow readers and stalled ones.

A swarm runs ``clients`` concurrent :func:`~sluicegate.client.fetch` loops for at
most ``duration`` seconds (and at most ``requests`` requests in all), split by a
*mix* of behaviours::

    fast            read as fast as possible
    slow=RATE       paced like ``fetch --limit-rate RATE``
    stall           connect, read the headers, then read nothing until the run ends

``"fast:90,slow=64K:9,stall:1"`` gives 90 %, 9 % and 1 % of the clients (largest
remainders round). It only targets loopback unless told otherwise: a swarm is a
load generator, and pointing it at someone else's server by a typo is not a test.

::

    result = await swarm("http://127.0.0.1:8000/big", clients=100,
                         mix="fast:9,stall:1", duration=5)
    print(result.completed, result.ttfb_p99)
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sluicegate.client.fetch import ExitCode, FetchCounters, FetchResult, fetch, parse_url
from sluicegate.client.schedule import Event, Schedule
from sluicegate.errors import ConfigError
from sluicegate.units import parse_rate

__all__ = [
    "ClassStats",
    "MixEntry",
    "SwarmResult",
    "allocate",
    "check_target",
    "parse_mix",
    "percentile",
    "swarm",
]

Kind = Literal["fast", "slow", "stall"]
#: a stalled client pauses at the first body byte and never resumes
STALL = Schedule((Event(0.0, "pause", math.inf),))
#: pause after a failed request so a refused connection does not become a hot loop
ERROR_BACKOFF = 0.1
#: Largest weight in a mix: weights are proportions, and a million parts is plenty.
MAX_WEIGHT = 1_000_000


@dataclass(frozen=True, slots=True)
class MixEntry:
    """One behaviour of the mix and its weight."""

    kind: Kind
    weight: int
    rate: float | None = None
    label: str = ""


def _mix_error(spec: str, index: int, item: str, why: str) -> ConfigError:
    return ConfigError(f"bad mix {spec!r}: item {index} {item.strip()!r}: {why}")


def parse_mix(spec: str) -> tuple[MixEntry, ...]:
    """Parse ``"fast:90,slow=64K:9,stall:1"``; a missing ``:WEIGHT`` means 1.

    >>> [(e.label, e.weight) for e in parse_mix("fast:90, slow=64K:9, stall")]
    [('fast', 90), ('slow=64K', 9), ('stall', 1)]
    """
    if not spec.strip():
        raise ConfigError("bad mix '': expected KIND[:WEIGHT] items, e.g. fast:90,slow=64K:10")
    entries: list[MixEntry] = []
    for index, item in enumerate(spec.split(","), 1):
        head, colon, weight_text = item.strip().rpartition(":")
        if not colon:
            head, weight_text = item.strip(), "1"
        weight_text = weight_text.strip()
        # Length first: int() of thousands of digits is slow, then refused by Python.
        valid = weight_text.isascii() and weight_text.isdigit() and len(weight_text) <= 7
        if not valid or not 0 < int(weight_text) <= MAX_WEIGHT:
            why = f"weight {weight_text[:20]!r} is not a whole number from 1 to {MAX_WEIGHT:,}"
            raise _mix_error(spec, index, item, why)
        weight = int(weight_text)
        kind, eq, rate_text = (part.strip() for part in head.partition("="))
        if kind == "slow":
            if not eq or not rate_text:
                raise _mix_error(spec, index, item, "slow needs a rate, e.g. slow=64K:9")
            try:
                rate = parse_rate(rate_text)
            except ConfigError as exc:
                raise _mix_error(spec, index, item, str(exc)) from None
            entries.append(MixEntry("slow", weight, rate, f"slow={rate_text}"))
        elif kind in ("fast", "stall"):
            if eq:
                raise _mix_error(spec, index, item, f"{kind} takes no rate")
            entries.append(MixEntry("fast" if kind == "fast" else "stall", weight, None, kind))
        else:
            raise _mix_error(
                spec, index, item, f"unknown kind {kind!r} (use fast, slow=RATE or stall)"
            )
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"bad mix {spec!r}: a kind appears twice")
    return tuple(entries)


def allocate(weights: Sequence[int], clients: int) -> list[int]:
    """Split ``clients`` by ``weights``, largest remainders first (earlier wins ties).

    >>> allocate([90, 9, 1], 500), allocate([90, 9, 1], 10)
    ([450, 45, 5], [9, 1, 0])
    """
    total = sum(weights)
    shares = [clients * w / total for w in weights]
    counts = [int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[: clients - sum(counts)]:
        counts[i] += 1
    return counts


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_target(url: str, allow_remote: bool = False) -> None:
    """Refuse a non-loopback target unless ``allow_remote``; also checks the URL."""
    host = parse_url(url).hostname or ""
    if not allow_remote and not is_loopback(host):
        raise ConfigError(
            f"refusing to swarm {host!r}: only loopback targets (127.0.0.0/8, ::1, "
            "localhost) unless --allow-remote"
        )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(slots=True)
class ClassStats:
    """What the clients of one mix entry did."""

    label: str
    clients: int
    requests: int = 0
    completed: int = 0
    incomplete: int = 0
    errored: int = 0
    #: requests still running when the run ended (every stalled client's)
    interrupted: int = 0
    bytes: int = 0
    ttfbs: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def record(self, result: FetchResult) -> None:
        """Count one finished request."""
        self.bytes += result.bytes_received
        if result.ttfb is not None:
            self.ttfbs.append(result.ttfb)
        if result.exit_code == ExitCode.OK:
            self.completed += 1
        elif result.exit_code == ExitCode.INCOMPLETE:
            self.incomplete += 1
        else:
            self.errored += 1
            key = result.error or f"exit {int(result.exit_code)}"
            if key in self.errors or len(self.errors) < 5:
                self.errors[key] = self.errors.get(key, 0) + 1

    def record_interrupted(self, counters: FetchCounters) -> None:
        """Count one request the end of the run cut short."""
        self.interrupted += 1
        self.bytes += counters.body_bytes
        if counters.ttfb is not None:
            self.ttfbs.append(counters.ttfb)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (no raw samples)."""
        return {
            "label": self.label,
            "clients": self.clients,
            "requests": self.requests,
            "completed": self.completed,
            "incomplete": self.incomplete,
            "errored": self.errored,
            "interrupted": self.interrupted,
            "bytes": self.bytes,
            "ttfb_p50": _round(percentile(self.ttfbs, 50)),
            "ttfb_p99": _round(percentile(self.ttfbs, 99)),
            "errors": dict(self.errors),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(slots=True)
class SwarmResult:
    """The outcome of a swarm run: totals and one :class:`ClassStats` per mix entry."""

    url: str
    duration: float
    stopped_by: Literal["duration", "requests"]
    classes: list[ClassStats]

    def _sum(self, name: str) -> int:
        return sum(int(getattr(c, name)) for c in self.classes)

    @property
    def requests(self) -> int:
        """Requests started."""
        return self._sum("requests")

    @property
    def completed(self) -> int:
        """Requests whose body arrived whole."""
        return self._sum("completed")

    @property
    def incomplete(self) -> int:
        """Requests whose connection ended early (server cut, stall timeout)."""
        return self._sum("incomplete")

    @property
    def errored(self) -> int:
        """Requests that failed to connect or got an error status."""
        return self._sum("errored")

    @property
    def interrupted(self) -> int:
        """Requests still running when the run ended."""
        return self._sum("interrupted")

    @property
    def bytes(self) -> int:
        """Body bytes read by all clients."""
        return self._sum("bytes")

    @property
    def throughput(self) -> float:
        """Body bytes per second over the run."""
        return self.bytes / self.duration if self.duration > 0 else 0.0

    def ttfb(self, q: float) -> float | None:
        """Time-to-first-byte percentile over every request."""
        return percentile([t for c in self.classes for t in c.ttfbs], q)

    def to_dict(self) -> dict[str, Any]:
        """What ``sluicegate swarm --json`` prints."""
        return {
            "url": self.url,
            "duration": round(self.duration, 3),
            "stopped_by": self.stopped_by,
            "clients": sum(c.clients for c in self.classes),
            "requests": self.requests,
            "completed": self.completed,
            "incomplete": self.incomplete,
            "errored": self.errored,
            "interrupted": self.interrupted,
            "bytes": self.bytes,
            "throughput": round(self.throughput, 1),
            "ttfb_p50": _round(self.ttfb(50)),
            "ttfb_p99": _round(self.ttfb(99)),
            "classes": [c.to_dict() for c in self.classes],
        }


class _Budget:
    """Shared request budget: ``None`` means unlimited."""

    def __init__(self, requests: int | None) -> None:
        self.left = requests

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _client(
    url: str, entry: MixEntry, stats: ClassStats, budget: _Budget, stall_timeout: float
) -> None:
    while budget.take():
        stats.requests += 1
        counters = FetchCounters()
        try:
            result = await fetch(
                url,
                limit_rate=entry.rate,
                schedule=STALL if entry.kind == "stall" else None,
                counters=counters,
                timeout=stall_timeout,
                check=False,
            )
        except asyncio.CancelledError:
            stats.record_interrupted(counters)
            raise
        stats.record(result)
        if result.exit_code not in (ExitCode.OK, ExitCode.INCOMPLETE):
            await asyncio.sleep(ERROR_BACKOFF)


def _fd_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


async def swarm(
    url: str,
    *,
    clients: int = 10,
    mix: str | Sequence[MixEntry] = "fast:1",
    duration: float = 10.0,
    requests: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - each request's stall timeout
    allow_remote: bool = False,
) -> SwarmResult:
    """Run ``clients`` concurrent fetch loops against ``url``; return the totals.

    The run ends after ``duration`` seconds, or sooner when ``requests`` requests
    (in all) have been made and finished. Requests still running at the end are
    cancelled and counted as ``interrupted``. Raises
    :class:`~sluicegate.errors.ConfigError` on bad arguments or a non-loopback
    target without ``allow_remote``.
    """
    check_target(url, allow_remote)
    entries = parse_mix(mix) if isinstance(mix, str) else tuple(mix)
    if not entries:
        raise ConfigError("bad mix: no entries")
    if clients < 1:
        raise ConfigError(f"bad clients {clients}: need at least 1")
    limit = _fd_limit()
    if limit is not None and clients + 32 > limit:
        raise ConfigError(
            f"bad clients {clients}: the open-file limit is {limit} (raise it with ulimit -n)"
        )
    if not (duration > 0 and math.isfinite(duration)):
        raise ConfigError(f"bad duration {duration}: must be a finite number of seconds > 0")
    if requests is not None and requests < 1:
        raise ConfigError(f"bad requests {requests}: need at least 1")
    if not timeout > 0:
        raise ConfigError(f"bad timeout {timeout}: must be more than 0 s")

    counts = allocate([e.weight for e in entries], clients)
    stats = [ClassStats(e.label, n) for e, n in zip(entries, counts, strict=True)]
    budget = _Budget(requests)
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_client(url, entry, st, budget, timeout))
        for entry, st, n in zip(entries, stats, counts, strict=True)
        for _ in range(n)
    ]
    try:
        _, pending = await asyncio.wait(tasks, timeout=duration)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        # A client only ends by its budget or by cancellation; anything else is a bug.
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome
    return SwarmResult(url, elapsed, "duration" if pending else "requests", stats)
