"""OpenTelemetry spans and metrics for every stream, ending at its last byte.

::

    from sluicegate.observe.otel import OpenTelemetryObserver
    OpenTelemetryObserver().install()        # the global tracer and meter providers

Uses the OpenTelemetry **API** only (extra ``[otel]``); the application brings the SDK
and its exporters, as OpenTelemetry asks of libraries. Without an SDK configured every
call is a no-op.

**Spans.** One ``INTERNAL`` span, ``sluicegate.stream``, per stream, child of whatever
span is current when the response starts (the server span of
``opentelemetry-instrumentation-asgi``, when present). A server span ends when the
application returns; sluicegate's applications return after the last byte, and this
span says so in its own terms: it starts when the stream is registered, gets a
``first_byte`` event when the head goes out (with the first chunk) and ends after the
last byte, or at the cut. Attributes: ``http.request.method``, ``url.path``,
``http.response.status_code`` (``499`` when the client left), ``sluicegate.outcome``,
``sluicegate.bytes_sent``, ``sluicegate.drops``, ``sluicegate.blocked_seconds`` and
``error.type`` when the body did not arrive whole. The status is ``ERROR`` for a
producer failure and for a guard cut; a client that left is its own choice, not an
error of the server (as for any 4xx on a server span).

**Metrics** (attributes ``http.request.method``, ``http.response.status_code``,
``sluicegate.outcome``; never the path, whose values are unbounded):

=========================================  =========  ==========================================
``sluicegate.stream.duration``             histogram  start to last byte, s (its count: streams)
``sluicegate.stream.time_to_first_byte``   histogram  start to the head (with the first chunk), s
``sluicegate.stream.dropped``              counter    bytes a leaky channel dropped
``sluicegate.stream.drops``                counter    chunks a leaky channel dropped
``sluicegate.stream.guard_cuts``           counter    streams the slow-reader guard cut
``sluicegate.stream.sent``                 async ctr  bytes sent, live streams included
``sluicegate.stream.blocked``              async ctr  s the server's send() waited on clients
``sluicegate.stream.active``               async u/d  streams running now
``sluicegate.stream.buffered``             gauge      bytes sluicegate holds now
=========================================  =========  ==========================================

The last four are read from :func:`sluicegate.engine.metrics.snapshot` when the SDK
collects, so a long download's bytes show while it runs, at no cost per chunk. A
finished stream records two histograms (and a counter when it dropped or was cut):
the SDK's cost per recorded value is what observing costs, so there are few of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:  # say which extra brings it
    raise ModuleNotFoundError(
        f"sluicegate.observe.otel needs {exc.name}: pip install 'sluicegate[otel]'",
        name=exc.name,
    ) from exc

from sluicegate.engine.metrics import StreamMetrics
from sluicegate.observe.observer import DURATION_BUCKETS, TTFB_BUCKETS, InstalledObserver
from sluicegate.observe.outcome import StreamOutcome, outcome_of

__all__ = ["SCOPE", "SPAN_NAME", "OpenTelemetryObserver"]

#: the instrumentation scope's name (tracer and meter)
SCOPE = "sluicegate"
SPAN_NAME = "sluicegate.stream"


class OpenTelemetryObserver(InstalledObserver):
    """Records every stream as a span and in metrics; see the module docstring.

    ``tracer_provider`` / ``meter_provider`` default to the global ones. Call
    :meth:`install` to start observing the process's streams and :meth:`uninstall` to
    stop.
    """

    def __init__(
        self, *, tracer_provider: Any | None = None, meter_provider: Any | None = None
    ) -> None:
        from sluicegate import __version__

        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._spans: dict[StreamMetrics, Span] = {}
        self._duration = meter.create_histogram(
            "sluicegate.stream.duration",
            "s",
            "From the stream's start to its last byte (or the cut)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttfb = meter.create_histogram(
            "sluicegate.stream.time_to_first_byte",
            "s",
            "From the stream's start to its head, which goes out with the first chunk",
            explicit_bucket_boundaries_advisory=TTFB_BUCKETS,
        )
        self._dropped = meter.create_counter(
            "sluicegate.stream.dropped", "By", "Bytes a leaky channel dropped"
        )
        self._drops = meter.create_counter(
            "sluicegate.stream.drops", "{chunk}", "Chunks a leaky channel dropped"
        )
        self._cuts = meter.create_counter(
            "sluicegate.stream.guard_cuts", "{stream}", "Streams cut by the slow-reader guard"
        )
        meter.create_observable_counter(
            "sluicegate.stream.sent",
            [self._observe("bytes_sent")],
            "By",
            "Bytes handed to the server and accepted, live streams included",
        )
        meter.create_observable_counter(
            "sluicegate.stream.blocked",
            [self._observe("blocked_seconds")],
            "s",
            "Time the server's send() kept streams waiting for their clients",
        )
        meter.create_observable_up_down_counter(
            "sluicegate.stream.active", [self._observe("active_streams")], "{stream}"
        )
        meter.create_observable_gauge(
            "sluicegate.stream.buffered",
            [self._observe("bytes_buffered")],
            "By",
            "Bytes sluicegate holds now: queued plus the messages being sent",
        )

    def uninstall(self) -> None:
        """Stop observing; spans of streams still running are ended now."""
        super().uninstall()
        for span in self._spans.values():
            span.end()
        self._spans.clear()

    # -- StreamObserver ---------------------------------------------------------------

    def stream_started(self, m: StreamMetrics) -> None:
        """Start the stream's span, as a child of the current one."""
        # Method and path at the start, where samplers look; the rest at the end.
        attributes = {"http.request.method": m.method, "url.path": m.path}
        self._spans[m] = self._tracer.start_span(
            SPAN_NAME, kind=SpanKind.INTERNAL, attributes=attributes
        )

    def stream_committed(self, m: StreamMetrics) -> None:
        """Mark the first byte on the span."""
        span = self._spans.get(m)
        if span is not None:
            span.add_event("first_byte")

    def stream_ended(self, m: StreamMetrics) -> None:
        """Record the stream's metrics and end its span: after its last byte."""
        o = outcome_of(m)
        attributes = _attributes(o)
        self._duration.record(o.duration, attributes)
        if o.time_to_first_byte is not None:
            self._ttfb.record(o.time_to_first_byte, attributes)
        if o.drops:
            self._drops.add(o.drops, attributes)
            self._dropped.add(o.dropped_bytes, attributes)
        if o.guard_cut:
            self._cuts.add(1, attributes)
        span = self._spans.pop(m, None)
        if span is not None:
            _finish(span, o)

    def _observe(self, key: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self.observed.snapshot()[key])]

        return callback


def _attributes(o: StreamOutcome) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "http.response.status_code": o.status,
        "sluicegate.outcome": o.outcome,
    }
    if o.method:
        attributes["http.request.method"] = o.method
    return attributes


def _finish(span: Span, o: StreamOutcome) -> None:
    span.set_attributes(
        {
            "http.response.status_code": o.status,
            "sluicegate.outcome": o.outcome,
            "sluicegate.bytes_sent": o.bytes_sent,
            "sluicegate.drops": o.drops,
            "sluicegate.dropped_bytes": o.dropped_bytes,
            "sluicegate.blocked_seconds": o.blocked_seconds,
        }
    )
    if o.error_type is not None:
        span.set_attribute("error.type", o.error_type)
    if o.outcome in ("failed", "timed_out"):
        span.set_status(Status(StatusCode.ERROR, o.outcome))
    span.end()
