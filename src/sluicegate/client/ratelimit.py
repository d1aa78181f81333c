"""A token bucket that decides how much to read and when (sans-IO).

The bucket knows nothing of sockets or clocks: the caller passes ``now`` (any
monotonic seconds) and gets back byte counts and delays. That keeps pacing
decisions testable with a fake clock::

    >>> bucket = TokenBucket(rate=1000, burst=100, now=0.0)
    >>> bucket.available(0.0)
    100
    >>> bucket.consume(100, 0.0)
    >>> bucket.delay_for(50, 0.0)
    0.05
"""

from __future__ import annotations

from sluicegate.errors import ConfigError

__all__ = ["TokenBucket", "default_rcvbuf", "read_size_for"]

_KIB = 1024


def read_size_for(rate: float | None) -> int:
    """Bytes per socket read at ``rate``: about 1/20 s worth, from 1 KiB to 64 KiB.

    Small paced reads keep the kernel's receive buffer, not our own, as the only
    place where bytes wait; unlimited readers use 256 KiB reads.
    """
    if rate is None:
        return 256 * _KIB
    return max(_KIB, min(64 * _KIB, int(rate / 20)))


def default_rcvbuf(rate: float | None) -> int | None:
    """``SO_RCVBUF`` for a paced reader: about 1/4 s at ``rate``, 16 KiB to 1 MiB.

    A fixed receive buffer also turns off Linux's receive autotuning, which would
    otherwise grow the window to several MiB and let the server run far ahead of
    what we read. ``None`` (unlimited) keeps the kernel's default.
    """
    if rate is None:
        return None
    return max(16 * _KIB, min(1024 * _KIB, int(rate / 4)))


class TokenBucket:
    """Allow ``rate`` bytes per second on average and at most ``burst`` at once.

    The bucket starts full. ``rate=None`` means unlimited: everything is allowed
    at once. ``available`` never exceeds ``burst``, so one read is never bigger
    than the burst however long the caller waited (a pause does not earn credit).
    """

    def __init__(self, rate: float | None, burst: int, now: float) -> None:
        if rate is not None and rate <= 0:
            raise ConfigError(f"rate must be more than 0 bytes per second, not {rate}")
        if burst <= 0:
            raise ConfigError(f"burst must be more than 0 bytes, not {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if self.rate is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = max(self._last, now)

    def available(self, now: float) -> int:
        """Whole bytes that may be read at ``now``."""
        if self.rate is None:
            return self.burst
        self._refill(now)
        return max(0, int(self._tokens))

    def consume(self, n: int, now: float) -> None:
        """Record that ``n`` bytes were read at ``now``."""
        if self.rate is None:
            return
        self._refill(now)
        self._tokens -= n

    def delay_for(self, n: int, now: float) -> float:
        """Seconds from ``now`` until ``min(n, burst)`` bytes are available."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        missing = min(n, self.burst) - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def set_rate(self, rate: float | None, burst: int, now: float) -> None:
        """Change rate and burst from ``now`` on; credit earned so far is kept (capped)."""
        if rate is not None and rate <= 0:
            raise ConfigError(f"rate must be more than 0 bytes per second, not {rate}")
        self._refill(now)
        self.rate = rate
        self.burst = burst
        self._tokens = min(self._tokens, float(burst))
