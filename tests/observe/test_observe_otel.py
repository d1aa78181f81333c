"""OpenTelemetry spans and metrics, against the real SDK with in-memory exporters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluicegate.observe.otel import SPAN_NAME, OpenTelemetryObserver
from tests.observe import observe_scenarios as scenarios
from tests.servers import request, running


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def only_span(self) -> ReadableSpan:
        spans = [s for s in self.spans.get_finished_spans() if s.name == SPAN_NAME]
        assert len(spans) == 1, spans
        return spans[0]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    observer = OpenTelemetryObserver(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    ).install()
    try:
        yield Telemetry(spans, reader, tracer_provider)
    finally:
        observer.uninstall()
        meter_provider.shutdown()
        tracer_provider.shutdown()


async def test_the_span_ends_at_the_last_byte_not_at_the_head(telemetry: Telemetry) -> None:
    ran = await scenarios.complete()
    span = telemetry.only_span()
    assert span.kind == SpanKind.INTERNAL
    assert span.end_time is not None and span.start_time is not None
    (first_byte,) = [e for e in span.events if e.name == "first_byte"]
    assert span.start_time <= first_byte.timestamp <= ran.first_message_ns + 10**6
    # The head left PAUSE before the last byte; the span covers that, and ends after it.
    assert span.end_time >= ran.last_message_ns
    assert span.end_time - first_byte.timestamp >= scenarios.PAUSE * 1e9 * 0.9
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["sluicegate.outcome"] == "completed"
    assert span.attributes["sluicegate.bytes_sent"] == 2000
    assert span.attributes["url.path"] == "/complete"
    assert span.attributes["http.request.method"] == "GET"
    assert "error.type" not in span.attributes
    assert span.status.status_code == StatusCode.UNSET


async def test_time_to_first_byte_and_duration_are_recorded(telemetry: Telemetry) -> None:
    await scenarios.complete()
    (ttfb,) = telemetry.points("sluicegate.stream.time_to_first_byte")
    (duration,) = telemetry.points("sluicegate.stream.duration")
    assert ttfb.count == duration.count == 1
    assert ttfb.sum < scenarios.PAUSE <= duration.sum < 5  # wide margins
    assert dict(duration.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "sluicegate.outcome": "completed",
    }


async def test_a_client_that_left_is_recorded_as_499_and_not_an_error(
    telemetry: Telemetry,
) -> None:
    await scenarios.client_gone()
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 499
    assert span.attributes["error.type"] == "client_gone"
    assert span.status.status_code == StatusCode.UNSET
    (count,) = telemetry.points("sluicegate.stream.duration")
    assert count.count == 1 and count.attributes["http.response.status_code"] == 499


async def test_a_failure_after_the_head_is_an_error_span_with_the_sent_status(
    telemetry: Telemetry,
) -> None:
    await scenarios.failed_after_head()
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["sluicegate.outcome"] == "failed"
    assert span.status.status_code == StatusCode.ERROR


async def test_a_failure_before_the_head_is_a_500(telemetry: Telemetry) -> None:
    await scenarios.failed_before_head()
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.status.status_code == StatusCode.ERROR


async def test_a_guard_cut_is_counted_and_an_error(telemetry: Telemetry) -> None:
    await scenarios.guard_cut()
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["sluicegate.outcome"] == "timed_out"
    assert span.status.status_code == StatusCode.ERROR
    (cuts,) = telemetry.points("sluicegate.stream.guard_cuts")
    assert cuts.value == 1


async def test_drops_are_counted_in_chunks_and_bytes(telemetry: Telemetry) -> None:
    await scenarios.dropped()
    (drops,) = telemetry.points("sluicegate.stream.drops")
    (dropped,) = telemetry.points("sluicegate.stream.dropped")
    assert drops.value > 0 and dropped.value == drops.value * 100  # 100-byte records
    span = telemetry.only_span()
    assert span.attributes is not None and span.attributes["sluicegate.drops"] == drops.value


async def test_a_refusal_is_a_503(telemetry: Telemetry) -> None:
    await scenarios.refused()
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 503


async def test_the_span_is_a_child_of_the_current_one(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("GET /complete", kind=SpanKind.SERVER) as server:
        await scenarios.complete()
    span = telemetry.only_span()
    assert span.parent is not None
    assert span.parent.span_id == server.get_span_context().span_id


async def test_live_totals_include_bytes_sent_so_far(telemetry: Telemetry) -> None:
    (before,) = telemetry.points("sluicegate.stream.sent")
    await scenarios.complete()
    (after,) = telemetry.points("sluicegate.stream.sent")
    assert after.value - before.value >= 2000
    assert telemetry.points("sluicegate.stream.active")
    assert telemetry.points("sluicegate.stream.buffered")


def test_over_a_real_socket_a_reader_that_hangs_up_is_a_499(telemetry: Telemetry) -> None:
    import asyncio
    import time

    from sluicegate import StreamResponse

    async def endless() -> Any:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0.001)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await StreamResponse(endless())(scope, receive, send)

    with running(app, lifespan="off") as port:
        sock = request(port, "/endless")
        assert sock.recv(65536)
        sock.close()  # the client hangs up mid-stream
        deadline = time.monotonic() + 10
        while not [s for s in telemetry.spans.get_finished_spans() if s.name == SPAN_NAME]:
            assert time.monotonic() < deadline, "the stream never ended"
            time.sleep(0.02)
    span = telemetry.only_span()
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 499
    assert span.attributes["url.path"] == "/endless"
