"""Prometheus metrics for every stream, through ``prometheus_client`` (extra ``[prometheus]``).

::

    from prometheus_client import make_asgi_app
    from sluicegate.observe.prometheus import PrometheusObserver

    PrometheusObserver().install()                 # into prometheus_client's REGISTRY
    app = Starlette(routes=[..., Mount("/metrics", make_asgi_app())])

Per finished stream (labels ``method``, ``status`` with ``499`` for a client that left,
``outcome``; never the path, whose values are unbounded):

* ``sluicegate_streams_total``: streams that ended;
* ``sluicegate_stream_duration_seconds``: start to last byte (or the cut);
* ``sluicegate_time_to_first_byte_seconds``: start to the head, sent with the first chunk;
* ``sluicegate_dropped_chunks_total`` / ``sluicegate_dropped_bytes_total``: what leaky
  channels dropped;
* ``sluicegate_guard_cuts_total``: streams the slow-reader guard cut.

Read from :func:`sluicegate.engine.metrics.snapshot` at each scrape (so a long
download counts while it runs, at no cost per chunk):

* ``sluicegate_sent_bytes_total``, ``sluicegate_client_blocked_seconds_total``;
* ``sluicegate_active_streams``, ``sluicegate_buffered_bytes``,
  ``sluicegate_lingering_producers`` (producers still running after their client left).

With several worker processes each has its own numbers: use ``prometheus_client``'s
multiprocess mode, or scrape each worker.
"""

from __future__ import annotations

from collections.abc import Iterator

try:
    from prometheus_client import REGISTRY as PROMETHEUS_REGISTRY
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ModuleNotFoundError as exc:  # say which extra brings it
    raise ModuleNotFoundError(
        f"sluicegate.observe.prometheus needs {exc.name}: pip install 'sluicegate[prometheus]'",
        name=exc.name,
    ) from exc

from sluicegate.engine.metrics import StreamMetrics
from sluicegate.observe.observer import DURATION_BUCKETS, TTFB_BUCKETS, InstalledObserver
from sluicegate.observe.outcome import outcome_of

__all__ = ["PrometheusObserver"]

_LABELS = ("method", "status", "outcome")


class PrometheusObserver(InstalledObserver):
    """Registers sluicegate's metrics in ``registry`` and records every stream in them.

    ``registry`` defaults to ``prometheus_client``'s global one. Call :meth:`install`
    to start observing the process's streams and :meth:`uninstall` to stop (the
    metrics stay registered; the live ones keep reading the engine's totals).
    """

    def __init__(self, registry: CollectorRegistry = PROMETHEUS_REGISTRY) -> None:
        self._streams = Counter(
            "sluicegate_streams", "Streams that ended", _LABELS, registry=registry
        )
        self._duration = Histogram(
            "sluicegate_stream_duration_seconds",
            "From the stream's start to its last byte (or the cut)",
            _LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._ttfb = Histogram(
            "sluicegate_time_to_first_byte_seconds",
            "From the stream's start to its head, which goes out with the first chunk",
            ("method", "status"),
            buckets=TTFB_BUCKETS,
            registry=registry,
        )
        self._drops = Counter(
            "sluicegate_dropped_chunks", "Chunks leaky channels dropped", registry=registry
        )
        self._dropped = Counter(
            "sluicegate_dropped_bytes", "Bytes leaky channels dropped", registry=registry
        )
        self._cuts = Counter(
            "sluicegate_guard_cuts", "Streams cut by the slow-reader guard", registry=registry
        )
        registry.register(_LiveTotals(self))

    # -- StreamObserver ---------------------------------------------------------------

    def stream_started(self, m: StreamMetrics) -> None:
        """Nothing to do: the live totals are read at the scrape."""

    def stream_committed(self, m: StreamMetrics) -> None:
        """Nothing to do: the time to first byte is recorded with the stream's end."""

    def stream_ended(self, m: StreamMetrics) -> None:
        """Record the finished stream."""
        o = outcome_of(m)
        status = str(o.status)
        self._streams.labels(o.method, status, o.outcome).inc()
        self._duration.labels(o.method, status, o.outcome).observe(o.duration)
        if o.time_to_first_byte is not None:
            self._ttfb.labels(o.method, status).observe(o.time_to_first_byte)
        if o.drops:
            self._drops.inc(o.drops)
            self._dropped.inc(o.dropped_bytes)
        if o.guard_cut:
            self._cuts.inc()


class _LiveTotals(Collector):
    """The engine's process-wide totals, read at each scrape."""

    def __init__(self, observer: PrometheusObserver) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        snap = self._observer.observed.snapshot()
        yield CounterMetricFamily(
            "sluicegate_sent_bytes",
            "Bytes handed to the server and accepted, live streams included",
            value=snap["bytes_sent"],
        )
        yield CounterMetricFamily(
            "sluicegate_client_blocked_seconds",
            "Time the server's send() kept streams waiting for their clients",
            value=snap["blocked_seconds"],
        )
        yield GaugeMetricFamily(
            "sluicegate_active_streams", "Streams running now", value=snap["active_streams"]
        )
        yield GaugeMetricFamily(
            "sluicegate_buffered_bytes",
            "Bytes sluicegate holds now: queued plus the messages being sent",
            value=snap["bytes_buffered"],
        )
        yield GaugeMetricFamily(
            "sluicegate_lingering_producers",
            "Producers still running after their client left",
            value=snap["lingering_producers"],
        )
