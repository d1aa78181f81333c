"""Budgets: admission decisions with plain scopes, no server."""

from __future__ import annotations

import threading

import pytest

from sluicegate.engine.response import Refusal
from sluicegate.errors import ConfigError
from sluicegate.protect.budgets import Budgets, Ticket, client_address


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


def test_the_memory_budget_reads_what_is_buffered_now() -> None:
    buffered = [0.0]
    budgets = Budgets(max_buffered=1000, buffered=lambda: buffered[0])
    assert isinstance(budgets.admit(scope()), Ticket)
    buffered[0] = 1000.0
    refused = budgets.admit(scope())
    assert isinstance(refused, Refusal)
    assert refused.reason == "stream buffers are full (1,000 of 1,000 bytes)"
    buffered[0] = 999.0
    assert isinstance(budgets.admit(scope()), Ticket)


def test_the_default_memory_gauge_is_the_registry() -> None:
    # Nothing streams in this test: the registry holds nothing, so all are admitted.
    budgets = Budgets(max_buffered=1)
    assert isinstance(budgets.admit(scope()), Ticket)


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
    ],
)
def test_bad_budgets_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Budgets(**kwargs)  # type: ignore[arg-type]
