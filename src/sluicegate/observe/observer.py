"""What every exporter's observer shares: installing into a registry, and the buckets.

An exporter (:mod:`sluicegate.observe.otel`, :mod:`sluicegate.observe.prometheus`)
subclasses :class:`InstalledObserver` for ``install()`` / ``uninstall()`` and records
durations in the same histogram buckets, so the two report streams alike. This module
imports no exporter library.
"""

from __future__ import annotations

from typing import Self

from sluicegate.engine.metrics import REGISTRY, Registry, StreamObserver

__all__ = ["DURATION_BUCKETS", "TTFB_BUCKETS", "InstalledObserver"]

#: Stream durations, s: streams last from milliseconds to hours, and the exporters'
#: default boundaries stop at 10 s.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Times to first byte, s.
TTFB_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class InstalledObserver(StreamObserver):
    """A :class:`~sluicegate.engine.metrics.StreamObserver` that subscribes itself.

    The hooks it does not override do nothing.
    """

    _registry: Registry | None = None

    def install(self, registry: Registry = REGISTRY) -> Self:
        """Observe every stream of ``registry`` (the process's) from now on."""
        registry.subscribe(self)
        self._registry = registry
        return self

    @property
    def observed(self) -> Registry:
        """The registry whose totals the live metrics read: the one installed into,
        else the process's."""
        return self._registry or REGISTRY

    def uninstall(self) -> None:
        """Stop observing (a no-op when not installed)."""
        if self._registry is not None:
            self._registry.unsubscribe(self)
            self._registry = None
