"""Redis Streams: several processes share a topic, and Redis going away mid-stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sse_support import parse

from sluicegate.engine.channel import Channel
from sluicegate.events import Broadcast, EventStream, FeedOptions
from sluicegate.events.errors import BackendUnavailable
from sluicegate.events.redis import RedisBackend
from tests.asgi import Exchange, call
from tests.redis_server import RedisServer


def backend(url: str, prefix: str) -> RedisBackend:
    return RedisBackend(url, prefix=prefix, block=0.2, reconnect=0.1)


async def test_an_event_published_on_one_worker_reaches_subscribers_on_another(
    redis_url: str,
) -> None:
    prefix = f"test:share:{time.monotonic_ns()}:"
    async with (
        Broadcast(["t"], backend=backend(redis_url, prefix)) as a,
        Broadcast(["t"], backend=backend(redis_url, prefix)) as b,
    ):
        on_a, on_b = Channel(1 << 20), Channel(1 << 20)
        await a.subscribe("t", on_a)
        await b.subscribe("t", on_b)
        ids = [await a.publish("t", {"i": i}) for i in range(50)]
        for _ in range(250):  # up to 5 s for both readers
            if on_a.buffered >= 50 * 20 and on_b.buffered == on_a.buffered:
                break
            await asyncio.sleep(0.02)
        for channel in (on_a, on_b):
            body = bytes(channel.take(1 << 20) or b"")
            assert [e.last_event_id for e in parse(body.decode())] == ids

        # A client that was on A resumes on B with A's id: the ids are Redis's, shared.
        resumed = Channel(1 << 20)
        await b.subscribe("t", resumed, FeedOptions(), last_event_id=ids[9])
        await asyncio.sleep(0.1)
        body = bytes(resumed.take(1 << 20) or b"")
        assert [e.last_event_id for e in parse(body.decode())] == ids[10:]


async def test_redis_going_away_is_an_inband_error_and_nothing_is_delivered_twice(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    if not server.start():
        pytest.fail("could not start redis-server")
    try:
        async with Broadcast(["t"], backend=backend(server.url, "t:")) as b:
            ids = [await b.publish("t", i) for i in range(3)]
            ex = Exchange()
            task = asyncio.create_task(call(EventStream(b.feed("t")), exchange=ex))
            await asyncio.sleep(0.1)
            ids += [await b.publish("t", i) for i in range(3, 6)]
            await asyncio.sleep(0.2)

            server.stop()
            await asyncio.wait_for(task, 5)
            events = parse(ex.body.decode())
            assert [e.last_event_id for e in events[:-1]] == ids[3:]
            assert events[-1].event == "error"
            assert '"error":"BackendUnavailable"' in events[-1].data
            assert ex.complete  # ended cleanly: EventSource reconnects on its own

            with pytest.raises(BackendUnavailable):
                await b.publish("t", "lost")
            refused = await call(EventStream(b.feed("t")), headers=[(b"last-event-id", b"0-0")])
            assert refused.status == 503
            assert refused.headers["content-type"] == "application/problem+json"

            assert server.start(), "redis-server did not come back"
            # The client comes back with the last id it saw; events published after
            # the outage come once each (this Redis kept nothing: no persistence).
            after = [await b.publish("t", i) for i in range(6, 9)]
            back = Exchange()
            stream = EventStream(b.feed("t"))
            task = asyncio.create_task(
                call(stream, exchange=back, headers=[(b"last-event-id", ids[-1].encode())])
            )
            await asyncio.sleep(0.3)
            after += [await b.publish("t", i) for i in range(9, 12)]
            await asyncio.sleep(0.5)
            stream.close()
            await asyncio.wait_for(task, 5)
            got = [e.last_event_id for e in parse(back.body.decode()) if e.event == "message"]
            assert got == after
            assert len(set(got)) == len(got)
    finally:
        server.stop()
