"""The guard's decisions on a fake clock: plain numbers in, deadlines and verdicts out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.errors import ConfigError
from sluicegate.protect.guard import INSTANT, Guard, GuardPolicy

KiB = 1024


@dataclass
class Wire:
    """uvicorn's flow control over a kernel buffer, drained by a client at ``rate`` B/s.

    ``unsent`` is everything written and not yet read by the client: the kernel's
    ``kernel`` bytes plus the transport's buffer above them. ``send()`` waits while
    the transport is paused (its buffer went over ``high``) until it drains to
    ``low`` — exactly uvicorn's ``send()``.
    """

    rate: float
    kernel: int = 256 * KiB
    high: int = 64 * KiB
    low: int = 16 * KiB
    now: float = 0.0
    unsent: float = 0.0
    paused: bool = False

    def idle(self, seconds: float) -> None:
        """The producer takes ``seconds``; the client keeps reading meanwhile."""
        self.now += seconds
        self.unsent = max(0.0, self.unsent - self.rate * seconds)
        if self.unsent <= self.kernel + self.low:
            self.paused = False

    def send(self, guard: Guard, nbytes: int) -> str | None:
        """One ``send()`` as the pump makes it; the guard's verdict after it."""
        waited = 0.0
        if self.paused:
            start = self.now
            deadline = guard.deadline(start)
            waited = (self.unsent - self.kernel - self.low) / self.rate
            if start + waited > deadline:
                self.now = deadline
                return guard.verdict(deadline) or "deadline"
            self.now += waited
            self.unsent = self.kernel + self.low
            self.paused = False
        self.unsent += nbytes
        if self.unsent > self.kernel + self.high:
            self.paused = True
        guard.accepted(self.now, nbytes, waited)
        return guard.verdict(self.now)


def test_a_stalled_send_is_cut_at_the_stall_timeout_not_before() -> None:
    guard = GuardPolicy(stall_timeout=5.0).new(0.0)
    guard.accepted(1.0, 65536, 0.0)
    assert guard.deadline(2.0) == 7.0
    assert guard.verdict(6.0) is None
    reason = guard.verdict(7.0)
    assert reason == "a send waited 5.0 s for the client (limit 5.0 s)"


def test_each_wait_gets_its_own_deadline() -> None:
    guard = GuardPolicy(stall_timeout=5.0).new(0.0)
    for start in (0.0, 4.0, 8.0, 12.0):
        assert guard.deadline(start) == start + 5.0
        guard.accepted(start + 4.0, 65536, 4.0)  # 4 s each: long, but never 5
        assert guard.verdict(start + 4.0) is None


def test_min_rate_stretches_the_wait_so_a_client_at_that_rate_is_not_called_stalled() -> None:
    policy = GuardPolicy(stall_timeout=30.0, min_rate=1024)
    assert policy.wait_limit == 128.0  # 128 KiB at 1 KiB/s
    assert GuardPolicy(stall_timeout=30.0, min_rate=64 * KiB).wait_limit == 30.0
    assert GuardPolicy(stall_timeout=None, min_rate=64 * KiB).wait_limit == 2.0


def test_a_slow_producer_is_never_cut_for_the_clients_sake() -> None:
    # A live feed: one byte a second for a day, every send accepted at once.
    guard = GuardPolicy(stall_timeout=1.0, min_rate=10 * KiB, window=1.0, grace=0.0).new(0.0)
    for second in range(1, 86_400, 7):
        guard.accepted(float(second), 1, 0.0)
        assert guard.verdict(float(second)) is None
    assert guard.client_time == 0.0


def test_the_cost_of_a_write_itself_is_not_the_clients_time() -> None:
    guard = GuardPolicy(stall_timeout=None, min_rate=1e9, window=1.0, grace=0.0).new(0.0)
    for i in range(10_000):
        guard.accepted(i * 1.0, 10, INSTANT / 2)
        assert guard.verdict(i * 1.0) is None


def test_a_trickle_below_min_rate_is_cut_once_grace_is_over() -> None:
    policy = GuardPolicy(stall_timeout=None, min_rate=10 * KiB, window=4.0, grace=6.0)
    guard = policy.new(0.0)
    now = 0.0
    verdicts = []
    for _ in range(20):
        guard.deadline(now)
        now += 1.0
        guard.accepted(now, 5 * KiB, 1.0)  # 5 KiB/s: half the minimum
        verdicts.append(guard.verdict(now))
    first_cut = next(i for i, v in enumerate(verdicts) if v is not None)
    assert first_cut == 5  # after 6 s of waiting: the grace
    assert verdicts[first_cut] == (
        "the client read 5,120 B/s over the last 4.0 s of waiting, under min_rate 10,240 B/s"
    )


def test_the_window_forgets_a_fast_start() -> None:
    policy = GuardPolicy(stall_timeout=None, min_rate=10 * KiB, window=4.0, grace=1.0)
    guard = policy.new(0.0)
    guard.deadline(0.0)
    guard.accepted(1.0, 10 * 2**20, 1.0)  # 10 MiB in the first second
    now, cut_at = 1.0, None
    while cut_at is None and now < 100:
        guard.deadline(now)
        now += 0.5
        guard.accepted(now, 1 * KiB, 0.5)  # then 2 KiB/s
        if guard.verdict(now) is not None:
            cut_at = now
    # The fast second leaves the 4 s window once 4 s of trickle have been waited.
    assert cut_at is not None and 4.0 < cut_at <= 5.5


def test_the_oldest_wait_counts_only_for_its_part_inside_the_window() -> None:
    guard = GuardPolicy(stall_timeout=None, min_rate=1.0, window=10.0, grace=0.0).new(0.0)
    guard.accepted(8.0, 8000, 8.0)  # 1000 B/s for 8 s
    guard.accepted(12.0, 4000, 4.0)  # then 1000 B/s for 4 s
    rate, span = guard.rate()
    assert span == 10.0 and math.isclose(rate, 1000.0)
    guard.accepted(13.0, 0, 1.0)  # a second with nothing
    rate, _ = guard.rate()
    assert math.isclose(rate, 900.0)


def test_bytes_accepted_at_once_are_credited_to_the_next_wait() -> None:
    guard = GuardPolicy(stall_timeout=None, min_rate=1.0, window=10.0, grace=0.0).new(0.0)
    assert guard.rate() == (math.inf, 0.0)
    guard.accepted(0.1, 3000, 0.0)
    guard.accepted(0.2, 3000, 0.0)
    guard.accepted(2.2, 4000, 2.0)
    assert guard.rate() == (5000.0, 2.0)


@settings(max_examples=300, deadline=None)
@given(
    min_rate=st.floats(512, 2**20),
    headroom=st.floats(1.01, 20),
    message=st.integers(1, 64 * KiB),
    kernel=st.sampled_from([0, 16 * KiB, 256 * KiB, 4 * 2**20]),
    pauses=st.lists(st.floats(0, 5), min_size=1, max_size=50),
    window=st.floats(0.5, 30),
    grace=st.floats(0, 30),
)
def test_a_client_reading_steadily_above_min_rate_is_never_cut(
    min_rate: float,
    headroom: float,
    message: int,
    kernel: int,
    pauses: list[float],
    window: float,
    grace: float,
) -> None:
    policy = GuardPolicy(stall_timeout=1.0, min_rate=min_rate, window=window, grace=grace)
    wire = Wire(rate=min_rate * headroom, kernel=kernel)
    guard = policy.new(0.0)
    # A long download with the producer pausing now and then: every pause, 200 sends.
    for pause in pauses:
        wire.idle(pause)
        for _ in range(200):
            assert wire.send(guard, message) is None


@settings(max_examples=200, deadline=None)
@given(
    min_rate=st.floats(4 * KiB, 2**20),
    fraction=st.floats(0.05, 0.9),
    kernel=st.sampled_from([0, 256 * KiB, 4 * 2**20]),
    window=st.floats(0.5, 10),
    grace=st.floats(0, 10),
)
def test_a_client_reading_below_min_rate_is_always_cut(
    min_rate: float, fraction: float, kernel: int, window: float, grace: float
) -> None:
    policy = GuardPolicy(stall_timeout=None, min_rate=min_rate, window=window, grace=grace)
    wire = Wire(rate=min_rate * fraction, kernel=kernel)
    guard = policy.new(0.0)
    cut = None
    for _ in range(100_000):
        cut = wire.send(guard, 64 * KiB)
        if cut is not None:
            break
    assert cut is not None
    # Cut within a window of waiting past the grace, give or take two waits: the first
    # wait is credited with everything accepted at once before it, and the wait that
    # shows the rate is too low has to end first.
    assert guard.client_time <= grace + window + 2 * policy.wait_limit + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stall_timeout": 0}, "stall_timeout must be a positive number"),
        ({"stall_timeout": math.inf}, "stall_timeout must be a positive number"),
        ({"min_rate": -5.0}, "min_rate must be a positive number"),
        ({"stall_timeout": None}, "a guard needs stall_timeout or min_rate"),
        ({"window": 0}, "window must be a positive number"),
        ({"grace": -1}, "grace must be a number of seconds >= 0"),
        ({"grace": True}, "grace must be a number of seconds >= 0"),
        ({"server_buffer": 0}, "server_buffer must be a positive number"),
        ({"server_buffer": 1.5}, "server_buffer must be a positive number"),
    ],
)
def test_bad_policies_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GuardPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_policy_makes_fresh_guards() -> None:
    policy = GuardPolicy()
    a, b = policy.new(0.0), policy.new(1.0)
    a.accepted(2.0, 10, 1.0)
    assert a is not b and b.client_time == 0.0 and a.client_time == 1.0
    assert b.started == 1.0 and b.policy is policy
