"""Fixtures for the live-events tests: backends of every kind, on a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from backend_support import MakeBackend

from sluicegate.events.backend import Backend
from sluicegate.events.memory import MemoryBackend
from tests.redis_server import redis_url

__all__ = ["redis_url"]  # the shared fixture (tests/redis_server.py), used here

BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest) -> Iterator[MakeBackend]:
    """A factory of unstarted backends; on Redis they share one key prefix (one store)."""
    if request.param == "memory":

        def make(**options: Any) -> Backend:
            return MemoryBackend(**options)

    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{request.node.name}:{time.monotonic_ns()}:"
        from sluicegate.events.redis import RedisBackend

        def make(**options: Any) -> Backend:
            options.setdefault("prefix", prefix)
            options.setdefault("block", 0.2)
            return RedisBackend(url, **options)

    yield make
