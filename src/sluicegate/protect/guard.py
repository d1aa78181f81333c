"""Slow-reader protection: a stall timeout and a minimum rate per stream (sans-IO).

A client that stops reading, or reads a few bytes a second, holds a connection, a
producer and every buffer on the way open for as long as it likes: the *slow-read*
attack (``slowhttptest -X``). A :class:`GuardPolicy` makes one :class:`Guard` per
stream; the pump reports to it and asks it when to give up::

    from sluicegate import StreamResponse, defaults
    from sluicegate.protect.guard import GuardPolicy

    defaults.guard = GuardPolicy(stall_timeout=30.0, min_rate=4096)  # every stream
    StreamResponse(rows(), guard=GuardPolicy(stall_timeout=5.0))      # or one

**Only the client's time counts.** The pump says, for each message the server
accepted, how long ``send()`` waited for the client (``waited``). Time spent waiting
for the *producer* (a live feed that makes one event a minute) is not the client's
fault and is never held against it: a stream whose sends are all accepted at once is
never judged, however few bytes it carries. The rate is bytes over *waiting time*.

**The stall timeout** bounds one wait: a ``send()`` blocked for ``stall_timeout``
seconds means the client took less than one server write buffer in that time (on
uvicorn a send waits until its 64 KiB buffer drains to 16 KiB). A trickle does not
reset it, unlike nginx's ``send_timeout``, because a byte or two never frees a send.

**The minimum rate** is the average over the last ``window`` seconds of waiting,
judged after each accepted message once the stream has waited ``grace`` seconds in
all. Bytes accepted at once are credited to the next wait (the client is draining
them during it), so a client that keeps up is never under-counted.

**The two never disagree.** An honest client reading at ``min_rate`` needs up to
``server_buffer / min_rate`` seconds to free one waiting send, so when ``min_rate`` is
set a wait is allowed at least that long, whatever ``stall_timeout`` says. A client
that reads steadily faster than ``min_rate`` is never cut, however long the download.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from sluicegate.errors import ConfigError

__all__ = ["Guard", "GuardPolicy"]

#: A ``send()`` that returned within this many seconds did not wait for the client:
#: its duration is the cost of the write itself (or an event-loop hiccup), and
#: counting it as the client's time would slowly convict a slow *producer*.
INSTANT = 0.001

#: A wait is "over" this close to its deadline: event loops round their clocks
#: (uvloop to the millisecond), so a timeout can fire a hair before it.
_SLACK = 0.05


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Limits on how slowly a client may read; makes a :class:`Guard` per stream.

    :param stall_timeout: seconds one ``send()`` may wait for the client; None: no
        limit of its own (see ``min_rate``).
    :param min_rate: bytes per second the client must average over ``window``
        seconds of waiting; None: no minimum.
    :param window: seconds of waiting the average is taken over.
    :param grace: seconds of waiting before the rate is first judged (TCP slow start,
        a client that is still setting up).
    :param server_buffer: the most bytes a client may have to take before a waiting
        ``send()`` returns: the server's write buffer plus one message (uvicorn:
        64 KiB + 64 KiB). Only used with ``min_rate``, to size the longest wait.

    >>> GuardPolicy(stall_timeout=30.0, min_rate=1024).wait_limit
    128.0
    >>> GuardPolicy(stall_timeout=None, min_rate=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sluicegate.errors.ConfigError: a guard needs stall_timeout or min_rate (...)
    """

    stall_timeout: float | None = 30.0
    min_rate: float | None = None
    window: float = 10.0
    grace: float = 10.0
    server_buffer: int = 128 * 1024

    def __post_init__(self) -> None:
        if self.stall_timeout is not None and not _positive(self.stall_timeout):
            raise ConfigError(
                "stall_timeout must be a positive number of seconds or None, "
                f"not {self.stall_timeout!r}"
            )
        if self.min_rate is not None and not _positive(self.min_rate):
            raise ConfigError(
                f"min_rate must be a positive number of bytes/s or None, not {self.min_rate!r}"
            )
        if self.stall_timeout is None and self.min_rate is None:
            raise ConfigError(
                "a guard needs stall_timeout or min_rate (for no guard, pass guard=None)"
            )
        if not _positive(self.window):
            raise ConfigError(f"window must be a positive number of seconds, not {self.window!r}")
        if not _number(self.grace) or self.grace < 0:
            raise ConfigError(f"grace must be a number of seconds >= 0, not {self.grace!r}")
        if (
            not isinstance(self.server_buffer, int)
            or isinstance(self.server_buffer, bool)
            or self.server_buffer < 1
        ):
            raise ConfigError(
                f"server_buffer must be a positive number of bytes, not {self.server_buffer!r}"
            )

    @property
    def wait_limit(self) -> float:
        """The longest one ``send()`` may wait for the client, in seconds."""
        limit = self.stall_timeout or 0.0
        if self.min_rate is not None:
            limit = max(limit, self.server_buffer / self.min_rate)
        return limit

    def new(self, now: float) -> Guard:
        """The guard of one stream that starts at ``now`` (``time.monotonic()``)."""
        return Guard(self, now)


class Guard:
    """One stream's record of how its client reads; decides when to cut it.

    A sans-IO state machine: feed it times and byte counts, ask it for deadlines and
    verdicts. Times are plain floats (``time.monotonic()`` in production, anything
    in tests)::

        >>> g = GuardPolicy(stall_timeout=5.0).new(0.0)
        >>> g.deadline(1.0)               # a send starts waiting at t=1
        6.0
        >>> g.accepted(3.0, 65536, 2.0)   # ...and is accepted after 2 s
        >>> g.verdict(3.0) is None
        True
        >>> g.deadline(3.0)
        8.0
        >>> g.verdict(8.0)
        'a send waited 5.0 s for the client (limit 5.0 s)'
    """

    __slots__ = (
        "_client_time",
        "_deadline",
        "_in_window",
        "_pending",
        "_samples",
        "_waiting_since",
        "policy",
        "started",
    )

    def __init__(self, policy: GuardPolicy, now: float) -> None:
        self.policy = policy
        self.started = now
        # Seconds the stream has spent waiting for the client, all told. Waits tile
        # this clock: each sample covers (previous end, end].
        self._client_time = 0.0
        # (end on the client clock, bytes credited, seconds waited), oldest first
        self._samples: deque[tuple[float, int, float]] = deque()
        self._in_window = 0  # bytes of the samples in ``_samples``
        self._pending = 0  # bytes accepted at once, credited to the next wait
        self._waiting_since: float | None = None
        self._deadline: float | None = None

    @property
    def client_time(self) -> float:
        """Seconds this stream has waited for its client so far."""
        return self._client_time

    def accepted(self, now: float, nbytes: int, waited: float) -> None:
        """``nbytes`` were accepted at ``now`` after waiting ``waited`` s for the client."""
        self._waiting_since = self._deadline = None
        if waited < INSTANT:
            self._pending += nbytes
            return
        self._client_time += waited
        credited = self._pending + nbytes
        self._pending = 0
        self._samples.append((self._client_time, credited, waited))
        self._in_window += credited
        self._prune()

    def deadline(self, now: float) -> float:
        """A send starts waiting at ``now``: the time by which it must be accepted."""
        self._waiting_since = now
        self._deadline = now + self.policy.wait_limit
        return self._deadline

    def verdict(self, now: float) -> str | None:
        """Why the stream must be cut now (a short sentence), or None to go on."""
        since, deadline = self._waiting_since, self._deadline
        if since is not None and deadline is not None and now >= deadline - _SLACK:
            return (
                f"a send waited {now - since:.1f} s for the client "
                f"(limit {self.policy.wait_limit:.1f} s)"
            )
        min_rate = self.policy.min_rate
        if min_rate is None or self._client_time < self.policy.grace:
            return None
        rate, span = self.rate()
        if rate < min_rate:
            return (
                f"the client read {rate:,.0f} B/s over the last {span:.1f} s of waiting, "
                f"under min_rate {min_rate:,.0f} B/s"
            )
        return None

    def rate(self) -> tuple[float, float]:
        """(bytes/s, seconds): the client's average over the last ``window`` s of waiting.

        ``(inf, 0.0)`` before the stream has waited at all.
        """
        span = min(self.policy.window, self._client_time)
        if span <= 0:
            return math.inf, 0.0
        total = float(self._in_window)
        oldest_end, oldest_bytes, oldest_waited = self._samples[0]
        outside = (self._client_time - span) - (oldest_end - oldest_waited)
        if outside > 0:
            # The oldest wait straddles the window's start: count the part inside.
            total -= oldest_bytes * outside / oldest_waited
        return total / span, span

    def _prune(self) -> None:
        start = self._client_time - self.policy.window
        samples = self._samples
        while samples and samples[0][0] <= start:
            self._in_window -= samples.popleft()[1]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]
