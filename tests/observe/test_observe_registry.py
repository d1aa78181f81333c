"""The engine's observer hook: start, head and end, once per stream, never breaking it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sluicegate import StreamResponse
from sluicegate.engine.metrics import REGISTRY, StreamMetrics
from tests.asgi import call
from tests.observe import observe_scenarios as scenarios


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int | None, str]] = []

    def stream_started(self, m: StreamMetrics) -> None:
        self.events.append(("started", m.path, m.status, m.state))

    def stream_committed(self, m: StreamMetrics) -> None:
        assert m.first_byte is not None and m.first_byte >= m.started
        self.events.append(("committed", m.path, m.status, m.state))

    def stream_ended(self, m: StreamMetrics) -> None:
        assert m.ended is not None
        self.events.append(("ended", m.path, m.status, m.state))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    REGISTRY.subscribe(rec)
    REGISTRY.subscribe(rec)  # twice: still told once
    try:
        yield rec
    finally:
        REGISTRY.unsubscribe(rec)


async def test_a_stream_is_told_in_order_start_head_end(recorder: Recorder) -> None:
    await scenarios.complete()
    assert recorder.events == [
        ("started", "/complete", None, "streaming"),
        ("committed", "/complete", 200, "streaming"),
        ("ended", "/complete", 200, "completed"),
    ]


async def test_refusals_and_early_failures_report_the_status_they_sent(
    recorder: Recorder,
) -> None:
    await scenarios.refused()
    await scenarios.failed_before_head()
    committed = [e for e in recorder.events if e[0] == "committed"]
    assert committed == [("committed", "/refused", 503, "streaming"),
                         ("committed", "/early", 500, "streaming")]  # fmt: skip


async def test_a_head_request_is_committed_too(recorder: Recorder) -> None:
    await call(StreamResponse(b"hello"), method="HEAD", path="/head")
    assert [e[0] for e in recorder.events] == ["started", "committed", "ended"]


async def test_an_unsubscribed_observer_hears_nothing() -> None:
    rec = Recorder()
    REGISTRY.subscribe(rec)
    REGISTRY.unsubscribe(rec)
    REGISTRY.unsubscribe(rec)  # a no-op
    await scenarios.complete()
    assert rec.events == []


class Broken:
    calls = 0

    def stream_started(self, m: StreamMetrics) -> None:
        Broken.calls += 1
        raise ValueError("exporter down")

    stream_committed = stream_ended = stream_started


async def test_a_failing_observer_is_logged_once_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Broken()
    REGISTRY.subscribe(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="sluicegate"):
            first = await scenarios.complete()
            second = await scenarios.complete()
    finally:
        REGISTRY.unsubscribe(broken)
    assert first.exchange.complete and second.exchange.complete
    assert Broken.calls == 6
    assert [r.message for r in caplog.records].count(
        f"stream observer {broken!r} failed (logged once; the stream goes on)"
    ) == 1
