"""swarm against real local servers: counts per outcome and per class, loopback only."""

from __future__ import annotations

from typing import Any

import pytest
from client_servers import StreamApp

from sluicegate.client import swarm
from sluicegate.errors import ConfigError


async def test_requests_budget_stops_the_run_with_exact_counts(server) -> None:
    url = server(StreamApp(size=20_000))
    result = await swarm(url, clients=4, mix="fast:1", requests=25, duration=20)
    assert result.stopped_by == "requests"
    assert result.requests == result.completed == 25
    assert result.incomplete == result.errored == result.interrupted == 0
    assert result.bytes == 25 * 20_000
    assert result.ttfb(50) is not None and result.ttfb(99) is not None
    data = result.to_dict()
    assert data["completed"] == 25 and data["classes"][0]["label"] == "fast"


async def test_mix_of_fast_slow_and_stalled_clients(server) -> None:
    app = StreamApp(size=10**12)  # endless: nobody completes, everyone is cut at the end
    url = server(app)
    result = await swarm(url, clients=6, mix="fast:2,slow=64K:1,stall:1", duration=1.5)
    fast, slow, stall = result.classes
    assert (fast.clients, slow.clients, stall.clients) == (3, 2, 1)
    assert result.stopped_by == "duration"
    assert result.interrupted == 6 and result.completed == 0 and result.errored == 0
    assert len(stall.ttfbs) == 1  # the stalled client did get its headers
    # The slow pair read about 2 x 64 KiB/s x 1.5 s; the fast trio far more.
    assert slow.bytes < 600_000
    assert fast.bytes > 10 * slow.bytes
    assert stall.bytes < 300_000


async def test_cut_responses_count_as_incomplete_and_refusals_as_errors(server) -> None:
    async def cutting(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b"x" * 500, "more_body": True})
        raise ConnectionAbortedError("cut")

    url = server(cutting)
    result = await swarm(url, clients=2, requests=6, duration=20)
    assert result.incomplete == 6 and result.bytes == 6 * 500
    refused = await swarm("http://127.0.0.1:1/", clients=2, requests=4, duration=20)
    assert refused.errored == 4
    assert any("connection failed" in m for m in refused.classes[0].errors)


async def test_refuses_remote_targets_and_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"refusing to swarm '192\.0\.2\.1'"):
        await swarm("http://192.0.2.1/", clients=1, duration=1)
    with pytest.raises(ConfigError, match="bad mix"):
        await swarm("http://127.0.0.1:1/", mix="slow:1", duration=1)
    with pytest.raises(ConfigError, match="bad duration"):
        await swarm("http://127.0.0.1:1/", duration=0)
