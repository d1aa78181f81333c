"""fetch really reads slowly: server-side production follows the client's pace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from client_servers import StreamApp

from sluicegate.client import ExitCode, FetchCounters, fetch


def _kernel_send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


@pytest.mark.slow
async def test_rate_limit_holds_and_the_server_cannot_run_far_ahead(server) -> None:
    rate = 200_000
    app = StreamApp(size=200_000_000)
    url = server(app)
    counters = FetchCounters()
    ahead: list[int] = []

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.2)
            ahead.append(app.produced - counters.body_bytes)

    watcher = asyncio.create_task(watch())
    result = await fetch(url, limit_rate=rate, schedule="5s:stop", counters=counters, check=False)
    watcher.cancel()
    assert result.exit_code == ExitCode.INCOMPLETE and "stopped by the schedule" in str(
        result.error
    )
    # Body rate between 0.5 s and the stop, from the client's own samples.
    t0, b0 = next((t, b) for t, b in counters.samples if t >= 0.5)
    t1, b1 = counters.samples[-1]
    measured = (b1 - b0) / (t1 - t0)
    assert abs(measured - rate) / rate < 0.10, measured
    # What the server produced never ran ahead of what we read by more than the
    # socket buffers: at most the kernel's send-buffer ceiling plus our small
    # receive buffer and uvicorn's 64 KiB write buffer. An unpaced reader would
    # have let it produce all 200 MB.
    bound = _kernel_send_buffer_max() + 2 * 1024 * 1024
    assert max(ahead) < bound, (max(ahead), bound)
    assert app.produced < 20_000_000


async def test_pause_stops_server_side_production(server) -> None:
    size = 30_000_000
    app = StreamApp(size=size)
    url = server(app)
    counters = FetchCounters()
    seen: dict[str, tuple[int, int, bool]] = {}
    body_started = asyncio.Event()

    async def watch() -> None:
        # The pause runs from 0.5 s to 3.5 s after the headers; look inside it,
        # recording whether the client was indeed paused at that instant.
        await body_started.wait()
        await asyncio.sleep(1.5)
        seen["early"] = (app.produced, counters.socket_bytes, counters.paused)
        await asyncio.sleep(1.6)
        seen["late"] = (app.produced, counters.socket_bytes, counters.paused)

    watcher = asyncio.create_task(watch())
    # Paced, paused, then unlimited so the rest arrives quickly.
    result = await fetch(
        url,
        limit_rate="1M",
        schedule="0.5s:pause=3s,3.5s:rate=unlimited",
        counters=counters,
        timeout=10,
        on_progress=lambda _: body_started.set(),
    )
    await watcher
    assert result.complete and result.bytes_received == size
    assert counters.paused_seconds >= 2.9
    produced_early, read_early, paused_early = seen["early"]
    produced_late, read_late, paused_late = seen["late"]
    assert paused_early and paused_late, "samples fell outside the pause (machine too busy)"
    # While paused we read nothing, so the server's send() stayed blocked.
    assert read_late == read_early
    assert produced_late == produced_early
    assert produced_early < size  # the pause really held the server back
    assert app.produced == size


async def test_scheduled_rate_change_and_stop(server) -> None:
    app = StreamApp(size=10**12)
    url = server(app)
    counters = FetchCounters()
    result = await fetch(
        url,
        limit_rate="100K",
        schedule="0.5s:rate=unlimited,1s:stop",
        counters=counters,
        check=False,
    )
    assert result.exit_code == ExitCode.INCOMPLETE
    # 0.5 s at 100 KiB/s is about 50 KiB; unlimited for 0.5 s is far more.
    assert result.bytes_received > 1_000_000
    assert counters.rate is None
