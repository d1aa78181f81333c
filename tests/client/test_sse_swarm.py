"""The SSE swarm against real uvicorn servers: counts, gaps, resume across workers, CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sse_servers import NumberedFeed

from sluicegate.client.cli import swarm_command
from sluicegate.client.sse_swarm import sse_swarm
from sluicegate.errors import ConfigError


async def test_every_event_counted_with_its_latency(server) -> None:
    url = server(NumberedFeed(count=30)) + "/events"
    result = await sse_swarm([url], clients=5, duration=2.0)
    total = result.all
    assert (total.connected, total.events, total.lost, total.duplicated) == (5, 150, 0, 0)
    assert len(total.latencies) == 150
    assert 0 <= total.latency(50) < 1.0  # same machine, same clock: generous bound
    assert total.heartbeats > 0 and total.errors == {}


async def test_gaps_and_duplicates_are_counted(server) -> None:
    url = server(NumberedFeed(count=12, skip=frozenset({5, 6}), repeat=frozenset({9}))) + "/events"
    result = await sse_swarm([url], clients=3, duration=1.5)
    total = result.all
    assert (total.events, total.lost, total.duplicated) == (30, 6, 3)


async def test_resume_on_the_other_worker_loses_and_repeats_nothing(server) -> None:
    feed = NumberedFeed(count=40, cut_after=7)
    urls = [server(feed) + "/events", server(feed) + "/events"]
    result = await sse_swarm(urls, clients=4, duration=4.0, reconnect=True)
    total = result.all
    assert (total.events, total.lost, total.duplicated) == (160, 0, 0)
    assert total.reconnects >= 4 * 5
    resumed = [i for i in feed.last_event_ids if i is not None]
    assert len(resumed) >= 20 and all(i.isdigit() for i in resumed)


async def test_random_cuts_with_reconnect_lose_nothing(server) -> None:
    url = server(NumberedFeed(count=200, interval=0.005)) + "/events"
    result = await sse_swarm([url], clients=10, duration=3.0, reconnect=True, cuts_per_second=20)
    total = result.all
    assert total.reconnects > 5
    assert (total.events, total.lost, total.duplicated) == (2000, 0, 0)


async def test_slow_and_stalled_subscribers(server) -> None:
    url = server(NumberedFeed(count=400, interval=0.002, size=2000)) + "/events"
    # The feed takes 0.8 s; the rest is room for a loaded machine to deliver it all.
    duration = 3.0
    result = await sse_swarm([url], clients=6, mix="fast:1,slow=8K:1,stall:1", duration=duration)
    fast, slow, stall = result.classes
    assert fast.connected == slow.connected == stall.connected == 2
    assert fast.events == 800 and fast.lost == 0
    # 8 KiB/s for the run, plus what the small receive buffer let in
    assert 0 < slow.bytes < 2 * (8 * 1024 * duration + 64 * 1024)
    assert slow.latency(50) > fast.latency(50)
    assert stall.events == 0


async def test_wrong_responses_are_errors_not_events(server) -> None:
    base = server(NumberedFeed())
    result = await sse_swarm([base + "/nope"], clients=2, duration=1.0)
    assert result.all.connected == 0 and result.all.errors == {"status 404": 2}
    refused = await sse_swarm(["http://127.0.0.1:1/events"], clients=2, duration=1.0)
    assert any("connection failed" in e for e in refused.all.errors)


async def test_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="refusing to swarm"):
        await sse_swarm(["http://192.0.2.1/events"], clients=1, duration=1)
    with pytest.raises(ConfigError, match="same path"):
        await sse_swarm(["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"], duration=1)
    with pytest.raises(ConfigError, match="open-file limit"):
        await sse_swarm(["http://127.0.0.1:1/a"], clients=10**7, duration=1)


def test_cli_sse_json_and_table(server) -> None:
    url = server(NumberedFeed(count=10)) + "/events"
    runner = CliRunner()
    result = runner.invoke(swarm_command, [url, "--sse", "-n", "4", "-d", "1.5s", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["connected"], summary["events"], summary["lost"]) == (4, 40, 0)
    for key in ("duplicated", "latency_p50", "latency_p99", "classes", "reconnects"):
        assert key in summary
    mix = "fast:3,stall:1"
    table = runner.invoke(swarm_command, [url, "--sse", "-n", "4", "-d", "1s", "--mix", mix])
    assert table.exit_code == 0, table.output
    assert "latency p99" in table.output and "stall" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reconnect"], "--reconnect needs --sse"),
        (["--also", "http://127.0.0.1:2/"], "--also needs --sse"),
        (["--sse", "--requests", "3"], "--requests does not apply"),
        (["--sse", "--also", "http://192.0.2.9/x"], "refusing to swarm"),
        (["--sse", "--cuts-per-second", "-1"], "--cuts-per-second"),
    ],
)
def test_cli_sse_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(swarm_command, ["http://127.0.0.1:1/x", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_cli_against_sluicegate_serves_own_feed(server) -> None:
    """The feed ``sluicegate serve`` offers at /events counts like any other."""
    from sluicegate.cli.examples import app

    url = server(app) + "/events?rate=20&size=200"
    result = CliRunner().invoke(swarm_command, [url, "--sse", "-n", "5", "-d", "2s", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["connected"] == 5 and summary["events"] >= 5 * 10
    assert summary["lost"] == summary["duplicated"] == summary["unstamped"] == 0
    assert summary["latency_p99"] is not None
