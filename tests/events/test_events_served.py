"""Live events on a real server (``sluicegate serve`` on uvicorn, 127.0.0.1).

Resume across a cut, heartbeats on the wire, the shutdown event, bad requests, and
two server processes sharing a feed on Redis.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from events_servers import SERVE, serving
from sse_support import Parsed, SSEClient

from tests.redis_server import free_port
from tests.servers import stop


def numbers(events: list[Parsed]) -> list[int]:
    return [json.loads(e.data)["n"] for e in events if e.event == "tick"]


def test_a_client_cut_mid_stream_resumes_with_last_event_id_without_gap_or_duplicate() -> None:
    with serving() as server:
        first = SSEClient(server.port, "/events?rate=40&size=100")
        assert first.status == 200
        assert first.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert first.headers["cache-control"] == "no-cache"
        assert first.headers["x-accel-buffering"] == "no"
        got = first.events(10)
        first.close()  # the cut: events keep coming meanwhile
        time.sleep(0.5)
        second = SSEClient(server.port, "/events?rate=40&size=100", got[-1].last_event_id)
        more = second.events(30)
        second.close()
        seen = numbers(got) + numbers(more)
        assert len(seen) == 40
        assert seen == list(range(seen[0], seen[0] + 40))  # 20 of them replayed: no gap
        # size=100: the data is 100 bytes of JSON as sent (re-encoding it would drop a
        # timestamp's trailing zero, one time in ten).
        assert len(more[0].data.encode()) == 100


def test_heartbeats_reach_the_socket_when_the_feed_is_idle() -> None:
    with serving() as server:
        client = SSEClient(server.port, "/events?rate=1&size=100&heartbeat=200ms")
        assert client.status == 200
        got = client.events(100, timeout=2.5)  # two or three ticks, a second apart
        client.close()
        beats = client.body().count(b":\n\n")
        assert 1 <= len(got) <= 3
        # The opening comment, then about three per idle second (0.4, 0.6, 0.8 s after
        # each tick); wide margins: the machine is shared.
        assert 3 <= beats <= 12


def test_bad_requests_are_problems_on_the_wire() -> None:
    with serving() as server:
        for query, text in [
            ("rate=5000", "rate must be at most 1000"),
            ("size=1G", "size must be"),
            ("rate=1000&size=8K", "rate x size"),
            ("policy=wait", "policy must be one of"),
            ("nope=1", "unknown parameter"),
            ("rate=fast", "bad rate"),
        ]:
            client = SSEClient(server.port, f"/events?{query}")
            assert client.status == 400, query
            assert client.headers["content-type"] == "application/problem+json"
            assert text in client.read_all().decode(), query
            client.close()
        client = SSEClient(server.port, "/events", last_event_id="yesterday")
        assert client.status == 400
        client.close()


def test_shutdown_ends_open_streams_with_a_final_event_and_a_retry_hint() -> None:
    with serving() as server:
        clients = [SSEClient(server.port, "/events?rate=20&size=100") for _ in range(3)]
        for client in clients:
            client.events(2)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for client in clients:
            rest = client.events(10_000, timeout=10)
            assert rest and rest[-1].event == "shutdown"
            assert client.closed  # the body ended with its last chunk: a clean end
            assert client.reader.retry is not None and 1000 <= client.reader.retry <= 2000
            client.close()
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert server.proc.wait(10) in (0, -signal.SIGTERM)
        assert server.proc.stderr is not None
        assert "Traceback" not in server.proc.stderr.read()
        assert time.monotonic() - t0 < 5  # open streams did not hold the shutdown up


def test_two_servers_on_redis_share_one_feed_and_replay_across_them(redis_url: str) -> None:
    with (
        serving("--broadcast", redis_url) as a,
        serving("--broadcast", redis_url) as b,
    ):
        path = "/events?rate=25&size=100"
        on_a, on_b = SSEClient(a.port, path), SSEClient(b.port, path)
        got_a, got_b = on_a.events(20), on_b.events(40)
        # One feed, not two: both workers see one sequence of numbers, the same events
        # (same publish times), at the rate asked for, not twice it.
        common = set(numbers(got_a)) & set(numbers(got_b))
        assert common
        times_a = {json.loads(e.data)["n"]: json.loads(e.data)["published"] for e in got_a}
        times_b = {json.loads(e.data)["n"]: json.loads(e.data)["published"] for e in got_b}
        assert all(times_a[n] == times_b[n] for n in common)
        for seen in (numbers(got_a), numbers(got_b)):
            assert seen == list(range(seen[0], seen[0] + len(seen)))
        stamps = [json.loads(e.data)["published"] for e in got_b]
        assert stamps[-1] - stamps[0] >= 0.75 * (len(stamps) - 1) / 25
        on_b.close()
        on_a.close()
        time.sleep(0.4)
        # The client that was on A comes back on B: every missed event, once.
        back = SSEClient(b.port, path, got_a[-1].last_event_id)
        more = back.events(25)
        back.close()
        seen = numbers(got_a) + numbers(more)
        assert seen == list(range(seen[0], seen[0] + len(seen)))


def test_serve_refuses_a_bad_broadcast_url_in_one_line() -> None:
    from click.testing import CliRunner

    from sluicegate.cli import main

    result = CliRunner().invoke(main, ["serve", "--broadcast", "http://example.com"])
    assert result.exit_code == 2
    assert "--broadcast: expected a redis://" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main, ["serve", "--broadcast", "redis://127.0.0.1:1/0", "--app", "tests.asgi:call"]
    )
    assert result.exit_code == 2 and "example app" in result.output


def test_serve_with_an_unreachable_redis_fails_at_startup() -> None:

    redis = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    proc = subprocess.Popen(
        [*SERVE, "--port", str(free_port()), "--broadcast", redis],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail("serve did not give up on an unreachable Redis")
    assert proc.returncode != 0
    assert "Redis unavailable" in err


def test_workers_share_the_feed_on_redis_and_end_their_streams_on_shutdown(
    redis_url: str,
) -> None:
    with serving("--workers", "2", "--broadcast", redis_url) as server:
        clients = [SSEClient(server.port, "/events?rate=20&size=100") for _ in range(4)]
        got = [client.events(5) for client in clients]
        for seen in map(numbers, got):
            assert seen == list(range(seen[0], seen[0] + len(seen)))
        server.proc.send_signal(signal.SIGTERM)
        for client in clients:
            rest = client.events(10_000, timeout=15)
            assert rest and rest[-1].event == "shutdown"
            assert client.closed
            client.close()
        assert server.proc.wait(15) in (0, -signal.SIGTERM)
