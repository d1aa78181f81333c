"""What observing costs per stream: no observer, OpenTelemetry, Prometheus.

Run ``python benchmarks/bench_observe.py`` (``--help`` for options). Each round serves
``--streams`` small ``StreamResponse`` bodies in-process (no server, no socket: what is
left is the engine's own per-stream work plus the observer's) once per configuration,
the configurations interleaved so that the machine's noise falls on all of them alike.
It prints the median CPU time per stream of each, and what the observer adds.

The OpenTelemetry configuration is the SDK with a batch span processor whose exporter
drops the spans, and a metric reader that is never collected: the cost of recording,
not of shipping.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from sluicegate import StreamResponse

BODY = b"x" * 1024


async def _serve(n: int) -> None:
    scope = {"type": "http", "method": "GET", "path": "/small", "headers": []}
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def body() -> Any:
        yield BODY

    for _ in range(n):
        await StreamResponse(body())(scope, receive, send)


def _cpu_per_stream(n: int) -> float:
    start = time.process_time()
    asyncio.run(_serve(n))
    return (time.process_time() - start) / n * 1e6


def _otel() -> tuple[Callable[[], None], Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from sluicegate.observe.otel import OpenTelemetryObserver

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return observer.install, observer.uninstall


def _prometheus() -> tuple[Callable[[], None], Callable[[], None]]:
    from prometheus_client import CollectorRegistry

    from sluicegate.observe.prometheus import PrometheusObserver

    observer = PrometheusObserver(CollectorRegistry())
    return observer.install, observer.uninstall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=5000, help="streams per run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    args = parser.parse_args()
    nothing = (lambda: None, lambda: None)
    configs = {"none": nothing, "otel": _otel(), "prometheus": _prometheus()}
    _cpu_per_stream(args.streams // 5)  # warm up: imports, caches
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (install, uninstall) in configs.items():
            install()
            try:
                results[name].append(_cpu_per_stream(args.streams))
            finally:
                uninstall()
    base = statistics.median(results["none"])
    print(f"CPU per stream, in-process, {args.streams} streams x {args.rounds} rounds (median)")
    for name, values in results.items():
        med = statistics.median(values)
        spread = f"{min(values):.1f}-{max(values):.1f}"
        added = "" if name == "none" else f"  added {med - base:+6.1f} µs ({med / base - 1:+.0%})"
        print(f"  {name:<11} {med:7.1f} µs  (range {spread}){added}")


if __name__ == "__main__":
    main()
