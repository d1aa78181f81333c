"""Budgets: admission decisions with plain scopes, no server."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.engine.response import Refusal
from sluicegate.errors import ConfigError
from sluicegate.protect.budgets import REFRESH, Budgets, Ticket, client_address


def scope(host: str | None = "10.0.0.1") -> dict[str, object]:
    return {"type": "http", "client": (host, 40000) if host else None}


def test_the_stream_cap_refuses_the_next_stream_and_a_release_readmits() -> None:
    budgets = Budgets(max_streams=2, retry_after=3.0)
    tickets = [budgets.admit(scope(f"10.0.0.{i}")) for i in range(2)]
    assert all(isinstance(t, Ticket) for t in tickets)
    refused = budgets.admit(scope("10.0.0.9"))
    assert refused == Refusal("too many streams (2 of 2)", 3.0)
    tickets[0].release()  # type: ignore[union-attr]
    assert isinstance(budgets.admit(scope("10.0.0.9")), Ticket)
    assert budgets.active == 2


def test_the_per_client_cap_counts_each_address_apart() -> None:
    budgets = Budgets(max_streams_per_client=2)
    a1, a2 = budgets.admit(scope("10.0.0.1")), budgets.admit(scope("10.0.0.1"))
    refused = budgets.admit(scope("10.0.0.1"))
    assert isinstance(refused, Refusal)
    assert refused.reason == "too many streams from 10.0.0.1 (2 of 2)"
    assert isinstance(budgets.admit(scope("10.0.0.2")), Ticket)
    assert budgets.active_for("10.0.0.1") == 2
    a1.release()  # type: ignore[union-attr]
    a2.release()  # type: ignore[union-attr]
    assert budgets.active_for("10.0.0.1") == 0
    assert "10.0.0.1" not in budgets._per_client  # idle addresses are forgotten


@dataclass
class Held:
    """A stream's metrics, as the engine writes them."""

    bytes_buffered: int = 0
    peak_buffered: int = 0

    def hold(self, n: int) -> None:
        self.bytes_buffered = n
        self.peak_buffered = max(self.peak_buffered, n)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def path_scope(path: str, host: str = "10.0.0.1") -> dict[str, object]:
    return {**scope(host), "path": path}


def admit_watched(budgets: Budgets, path: str = "/download") -> tuple[Ticket, Held]:
    ticket = budgets.admit(path_scope(path))
    assert isinstance(ticket, Ticket), ticket
    held = Held()
    ticket.watch(held)
    return ticket, held


def test_a_burst_is_admitted_against_reservations_before_any_stream_produces() -> None:
    # 64 KiB budget, 16 KiB reserved per new stream: 4 admitted, the 5th refused, though
    # none of the 4 holds a byte yet.
    budgets = Budgets(max_buffered=64 * 1024, reserve=16 * 1024, min_reserve=1024)
    admitted = [budgets.admit(path_scope("/download")) for _ in range(500)]
    tickets = [t for t in admitted if isinstance(t, Ticket)]
    assert len(tickets) == 4
    refusal = admitted[4]
    assert isinstance(refusal, Refusal)
    assert refusal.reason == (
        "stream buffers are full (65,536 of 65,536 bytes counted, a new stream reserves 16,384)"
    )
    assert budgets.buffered() == 64 * 1024
    tickets[0].release()
    assert isinstance(budgets.admit(path_scope("/download")), Ticket)


def test_threads_in_a_burst_never_reserve_more_than_the_budget() -> None:
    budgets = Budgets(max_buffered=50 * 1024, reserve=1024, min_reserve=1024)
    admitted: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            result = budgets.admit(path_scope("/x"))
            if isinstance(result, Ticket):
                admitted.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(admitted) == 50 == budgets.active


def test_a_stream_counts_what_it_holds_when_that_is_more_than_its_reservation() -> None:
    budgets = Budgets(max_buffered=100_000, reserve=10_000, min_reserve=1000)
    _, held = admit_watched(budgets)
    held.hold(95_000)  # a whole 1 MiB-like chunk still with the server
    assert budgets.buffered() == 95_000
    refused = budgets.admit(path_scope("/download"))
    assert isinstance(refused, Refusal)
    held.hold(80_000)
    assert isinstance(budgets.admit(path_scope("/download")), Ticket)
    assert budgets.buffered() == 90_000


def test_one_stream_is_admitted_when_nothing_is_counted_even_over_a_small_budget() -> None:
    budgets = Budgets(max_buffered=1000, reserve=4096, min_reserve=1024)
    first = budgets.admit(path_scope("/download"))
    assert isinstance(first, Ticket)
    assert isinstance(budgets.admit(path_scope("/download")), Refusal)
    first.release()
    assert isinstance(budgets.admit(path_scope("/download")), Ticket)


def test_settled_idle_streams_count_what_they_hold_and_their_path_reserves_little() -> None:
    # Idle SSE streams: the first ones reserve the cold default; after they settle
    # they count what they hold (nearly nothing) and /events reserves min_reserve.
    clock = Clock()
    budgets = Budgets(
        max_buffered=1024 * 1024, reserve=256 * 1024, min_reserve=1024, settle=1.0, clock=clock
    )
    cold = [admit_watched(budgets, "/events") for _ in range(4)]
    assert isinstance(budgets.admit(path_scope("/events")), Refusal)  # 4 x 256 KiB
    for _, held in cold:
        held.hold(300)
    clock.now += 1.0
    assert budgets.buffered() == 4 * 300
    assert budgets.reservation("/events") == 1024
    assert budgets.reservation("/download") == 256 * 1024  # other paths stay cold
    warm = [budgets.admit(path_scope("/events")) for _ in range(2000)]
    admitted = sum(isinstance(t, Ticket) for t in warm)
    # (1 MiB - 1,200 bytes) / 1 KiB reservations
    assert admitted == (1024 * 1024 - 1200) // 1024


def test_settled_streams_are_summed_again_after_refresh_and_a_release_leaves_at_once() -> None:
    clock = Clock()
    budgets = Budgets(max_buffered=10**9, reserve=1024, min_reserve=1024, clock=clock)
    ticket, held = admit_watched(budgets)
    held.hold(5000)
    clock.now += 1.0
    assert budgets.buffered() == 5000  # settled now: summed at once
    held.hold(9000)
    assert budgets.buffered() == 5000  # within REFRESH: the cached sum
    clock.now += 2 * REFRESH
    assert budgets.buffered() == 9000
    _other, other_held = admit_watched(budgets)
    other_held.hold(100)
    clock.now += 1.0
    assert budgets.buffered() == 9100
    ticket.release()
    assert budgets.buffered() == 100  # no wait for the next refresh


def test_a_path_reserves_the_largest_recent_peak_of_its_streams() -> None:
    clock = Clock()
    budgets = Budgets(
        max_buffered=10 * 2**20, reserve=64 * 1024, min_reserve=1024, settle=1.0, clock=clock
    )
    ticket, held = admit_watched(budgets, "/download")
    held.hold(1_300_000)
    held.hold(200_000)
    ticket.release()  # ended before settling, having held 1.3 MB at its peak
    assert budgets.reservation("/download") == 1_300_000
    # a HEAD (watched, never held a byte) teaches nothing
    head, _ = admit_watched(budgets, "/download")
    head.release()
    assert budgets.reservation("/download") == 1_300_000
    # 16 later small streams push the large peak out of memory
    for _ in range(16):
        t, h = admit_watched(budgets, "/download")
        h.hold(10)
        t.release()
    assert budgets.reservation("/download") == 1024


def test_the_path_table_is_bounded() -> None:
    budgets = Budgets(reserve=8192, min_reserve=1024)
    for i in range(1000):
        t, h = admit_watched(budgets, f"/p/{i}")
        h.hold(2048)
        t.release()
    assert len(budgets._peaks) == 256
    assert budgets.reservation("/p/999") == 2048
    assert budgets.reservation("/p/0") == 8192  # forgotten: cold again


@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["admit", "hold", "release", "tick"]), st.integers(0, 50_000)),
        max_size=60,
    )
)
def test_admission_never_starts_a_stream_that_would_overfill_the_budget(
    plan: list[tuple[str, int]],
) -> None:
    # Whatever streams hold and however time passes, a stream is admitted only when
    # nothing is counted or what is counted plus its reservation fits.
    clock = Clock()
    budgets = Budgets(
        max_buffered=100_000, reserve=20_000, min_reserve=1000, settle=1.0, clock=clock
    )
    live: list[tuple[Ticket, Held]] = []
    for op, n in plan:
        if op == "admit":
            before = budgets.buffered()
            reserve = budgets.reservation("/d")
            result = budgets.admit(path_scope("/d"))
            if isinstance(result, Ticket):
                assert before == 0 or before + reserve <= 100_000
                assert result.reserved == reserve
                held = Held()
                result.watch(held)
                live.append((result, held))
            else:
                assert before > 0 and before + reserve > 100_000
        elif op == "hold" and live:
            live[n % len(live)][1].hold(n)
        elif op == "release" and live:
            live.pop(n % len(live))[0].release()
        elif op == "tick":
            clock.now += n / 20_000
    assert budgets.active == len(live)


def test_release_twice_gives_back_one_place() -> None:
    budgets = Budgets(max_streams=1)
    ticket = budgets.admit(scope())
    assert isinstance(ticket, Ticket)
    other = budgets.admit(scope("10.0.0.2"))
    assert isinstance(other, Refusal)
    ticket.release()
    ticket.release()
    assert budgets.active == 0
    again = budgets.admit(scope())
    assert isinstance(again, Ticket)
    assert isinstance(budgets.admit(scope()), Refusal)


def test_no_limits_admits_everyone() -> None:
    budgets = Budgets()
    tickets = [budgets.admit(scope()) for _ in range(1000)]
    assert all(isinstance(t, Ticket) for t in tickets)


def test_clients_without_an_address_share_one() -> None:
    assert client_address(scope(None)) == "unknown"
    assert client_address({"type": "http"}) == "unknown"
    assert client_address(scope("::1")) == "::1"


def test_threads_never_admit_more_than_the_cap() -> None:
    budgets = Budgets(max_streams=50)
    admitted: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            result = budgets.admit(scope())
            if isinstance(result, Ticket):
                admitted.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(admitted) == 50 == budgets.active


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_streams": 0}, "max_streams must be a positive int"),
        ({"max_streams_per_client": 1.5}, "max_streams_per_client must be a positive int"),
        ({"max_buffered": True}, "max_buffered must be a positive int"),
        ({"retry_after": 0}, "retry_after must be more than 0"),
        ({"retry_after": "5"}, "retry_after must be a number"),
        ({"reserve": 0}, "reserve must be a positive int"),
        ({"reserve": 1024, "min_reserve": 4096}, "min_reserve .4096. must not exceed"),
        ({"settle": float("nan")}, "settle must be more than 0"),
    ],
)
def test_bad_budgets_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Budgets(**kwargs)  # type: ignore[arg-type]
