"""Prometheus metrics through prometheus_client, read back from a private registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sluicegate.observe.prometheus import PrometheusObserver
from tests.observe import observe_scenarios as scenarios


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry).install()
    try:
        yield registry
    finally:
        observer.uninstall()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_a_complete_stream_is_counted_with_its_times(registry: CollectorRegistry) -> None:
    await scenarios.complete()
    labels = {"method": "GET", "status": "200", "outcome": "completed"}
    assert value(registry, "sluicegate_streams_total", **labels) == 1
    assert value(registry, "sluicegate_stream_duration_seconds_count", **labels) == 1
    duration = value(registry, "sluicegate_stream_duration_seconds_sum", **labels)
    ttfb = value(registry, "sluicegate_time_to_first_byte_seconds_sum", method="GET", status="200")
    assert ttfb < scenarios.PAUSE <= duration < 5  # the duration runs to the last byte


async def test_a_client_that_left_is_a_499(registry: CollectorRegistry) -> None:
    await scenarios.client_gone()
    labels = {"method": "GET", "status": "499", "outcome": "client_gone"}
    assert value(registry, "sluicegate_streams_total", **labels) == 1


async def test_failures_cuts_refusals_and_drops(registry: CollectorRegistry) -> None:
    await scenarios.failed_after_head()
    await scenarios.failed_before_head()
    await scenarios.guard_cut()
    await scenarios.refused()
    await scenarios.dropped()
    count = "sluicegate_streams_total"
    assert value(registry, count, method="GET", status="200", outcome="failed") == 1
    assert value(registry, count, method="GET", status="500", outcome="failed") == 1
    assert value(registry, count, method="GET", status="503", outcome="failed") == 1
    assert value(registry, count, method="GET", status="200", outcome="timed_out") == 1
    assert value(registry, "sluicegate_guard_cuts_total") == 1
    chunks = value(registry, "sluicegate_dropped_chunks_total")
    assert chunks > 0
    assert value(registry, "sluicegate_dropped_bytes_total") == chunks * 100


async def test_live_totals_are_read_at_the_scrape(registry: CollectorRegistry) -> None:
    before = value(registry, "sluicegate_sent_bytes_total")
    await scenarios.complete()
    assert value(registry, "sluicegate_sent_bytes_total") - before >= 2000
    text = generate_latest(registry).decode()
    for name in (
        "sluicegate_active_streams",
        "sluicegate_buffered_bytes",
        "sluicegate_lingering_producers",
        "sluicegate_client_blocked_seconds_total",
    ):
        assert f"\n{name} " in text


async def test_after_uninstall_streams_are_not_counted() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry).install()
    observer.uninstall()
    await scenarios.complete()
    assert (
        registry.get_sample_value(
            "sluicegate_streams_total", {"method": "GET", "status": "200", "outcome": "completed"}
        )
        is None
    )
