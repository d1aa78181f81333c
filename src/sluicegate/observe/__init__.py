"""Observability in the ecosystem's own terms: OpenTelemetry and Prometheus.

Both read the engine's per-stream counters (:mod:`sluicegate.engine.metrics`) through a
:class:`~sluicegate.engine.metrics.StreamObserver`, which the engine calls three times
per stream (start, head sent, end) and never per chunk. So a span or a duration ends
at the stream's **last byte**, not when the handler returned its response object, and
a client that left is recorded as status **499**, as nginx logs it.

* :mod:`sluicegate.observe.outcome`: one finished stream as plain values (sans-IO);
* :mod:`sluicegate.observe.observer`: ``install()`` / ``uninstall()`` and the histogram
  buckets, shared by both exporters;
* :mod:`sluicegate.observe.otel`: spans and metrics through the OpenTelemetry API
  (extra ``[otel]``);
* :mod:`sluicegate.observe.prometheus`: metrics through ``prometheus_client``
  (extra ``[prometheus]``).

Each exporter module imports its library; this package imports neither::

    from sluicegate.observe.otel import OpenTelemetryObserver
    OpenTelemetryObserver().install()

See ``docs/guides/observability.md``.
"""
