"""Broadcast and subscriptions in process: fan-out, resume, the slow-subscriber policies."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from backend_support import MakeBackend
from sse_support import Parsed, SSEReader

from sluicegate.engine.channel import Channel
from sluicegate.errors import ChannelClosed
from sluicegate.events import Broadcast, FeedOptions
from sluicegate.events.errors import (
    BadLastEventId,
    EventError,
    EventTooLarge,
    SlowSubscriber,
    UnknownTopic,
)
from sluicegate.events.metrics import COUNTERS
from sluicegate.events.subscription import TRANSITIONS, State, Subscription


def drain(channel: Channel, reader: SSEReader | None = None) -> list[Parsed]:
    """Take (and release) everything queued now; parse it."""
    reader = reader or SSEReader()
    out: list[Parsed] = []
    while (chunk := channel.take(1 << 20)) is not None:
        channel.release(len(chunk))
        out += reader.feed(bytes(chunk).decode())
    return out


async def read_until(channel: Channel, count: int, reader: SSEReader) -> list[Parsed]:
    """Read like a fast client until ``count`` events arrived."""
    got: list[Parsed] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += drain(channel, reader)
            if len(got) < count:
                if channel.closed:
                    break
                await channel.wait_data()
    return got


async def test_an_event_is_encoded_once_and_shared_by_reference() -> None:
    async with Broadcast(["t"]) as b:
        a, c = Channel(4096, "drop_oldest"), Channel(4096, "drop_oldest")
        await b.subscribe("t", a)
        await b.subscribe("t", c)
        await b.publish("t", {"big": "x" * 3000})
        first, second = a.take(1 << 20), c.take(1 << 20)
        assert first is second


async def test_subscribe_and_unsubscribe_are_counted() -> None:
    before = COUNTERS.subscribers
    async with Broadcast(["t"]) as b:
        subs = [await b.subscribe("t", Channel()) for _ in range(3)]
        assert b.subscribers("t") == 3
        assert COUNTERS.subscribers == before + 3
        subs[1].close()
        subs[1].close()  # twice is fine
        assert b.subscribers("t") == 2
        assert COUNTERS.subscribers == before + 2
    assert COUNTERS.subscribers == before


async def test_bad_input_gets_clear_errors_and_publishes_nothing() -> None:
    async with Broadcast(["t"], max_event_size=1024) as b:
        with pytest.raises(UnknownTopic, match="'nope'"):
            await b.publish("nope", "x")
        with pytest.raises(UnknownTopic):
            await b.subscribe("nope", Channel())
        with pytest.raises(EventTooLarge, match="at most 1024"):
            await b.publish("t", "x" * 2000)
        with pytest.raises(EventError):
            await b.publish("t", "x", event="two\nlines")
        with pytest.raises(BadLastEventId):
            await b.subscribe("t", Channel(), last_event_id="not-an-id")
        assert b.subscribers("t") == 0
        channel = Channel()
        await b.subscribe("t", channel, last_event_id="0-0")
        await asyncio.sleep(0.01)
        assert drain(channel) == []  # nothing was published


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_resuming_subscribers_get_every_event_once_in_order(
    make_backend: MakeBackend, seed: int
) -> None:
    """Subscribers join at random moments with random earlier ids while events flow."""
    rng = random.Random(seed)
    b = Broadcast(["t"], backend=make_backend(replay=1000))
    async with b:
        ids: list[str] = []
        total = 200

        async def publisher() -> None:
            for i in range(total):
                ids.append(await b.publish("t", {"i": i}))
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.random() * 0.003)

        async def subscriber() -> tuple[str, list[str]]:
            await asyncio.sleep(0.001 + rng.random() * 0.05)
            assert ids, "the publisher has started"
            since = rng.choice(ids)
            channel = Channel(1 << 20, "wait")
            options = FeedOptions(policy="disconnect", limit=1 << 20)
            await b.subscribe("t", channel, options, last_event_id=since)
            reader = SSEReader()
            expected = total - 1 - ids.index(since)
            got = await read_until(channel, expected, reader)
            await asyncio.sleep(0.05)
            got += drain(channel, reader)
            return since, [p.last_event_id for p in got]

        results = await asyncio.gather(publisher(), *(subscriber() for _ in range(8)))
        for since, got in results[1:]:  # type: ignore[misc]
            assert got == ids[ids.index(since) + 1 :], f"resumed after {since}"


async def test_an_id_older_than_the_log_gets_a_resync_event_then_live() -> None:
    async with Broadcast(["t"], replay=5) as b:
        ids = [await b.publish("t", i) for i in range(20)]
        channel = Channel(1 << 16)
        before = COUNTERS.resyncs
        await b.subscribe("t", channel, last_event_id=ids[2])
        await asyncio.sleep(0.01)
        later = await b.publish("t", "after")
        got = drain(channel)
        assert [p.event for p in got] == ["resync", "message"]
        assert got[0].last_event_id == ids[-1]  # a client cut now resumes from the head
        assert f'"last_event_id":"{ids[2]}"' in got[0].data
        assert got[1].last_event_id == later
        assert COUNTERS.resyncs == before + 1


async def test_an_id_from_another_log_is_a_resync() -> None:
    async with Broadcast(["t"]) as old, Broadcast(["t"]) as new:
        stale = await old.publish("t", "before the restart")
        await new.publish("t", "after")
        channel = Channel()
        await new.subscribe("t", channel, last_event_id=stale)
        await asyncio.sleep(0.01)
        assert [p.event for p in drain(channel)] == ["resync"]


async def test_a_frozen_drop_oldest_subscriber_never_holds_up_the_others() -> None:
    async with Broadcast(["t"], limit=2048, policy="drop_oldest") as b:
        frozen, live = Channel(2048, "drop_oldest"), Channel(1 << 20, "drop_oldest")
        await b.subscribe("t", frozen, FeedOptions(limit=2048))
        await b.subscribe("t", live, FeedOptions(limit=1 << 20))
        dropped = COUNTERS.dropped
        t0 = time.perf_counter()
        for i in range(2000):
            await b.publish("t", {"i": i, "pad": "x" * 100})
        elapsed = time.perf_counter() - t0
        assert len(drain(live)) == 2000
        assert frozen.buffered <= 2048  # drop_oldest keeps within the limit
        assert COUNTERS.dropped - dropped >= 2000 - 2048 // 100
        # The frozen reader kept the newest, whole events.
        kept = drain(frozen)
        assert kept and kept[-1].data.startswith('{"i":1999')
        assert elapsed < 5  # wide: publishing never waited for the frozen reader


async def test_latest_keeps_the_newest_event_of_each_key() -> None:
    async with Broadcast(["prices"]) as b:
        channel = FeedOptions(policy="latest", limit=300).channel()
        await b.subscribe("prices", channel, FeedOptions(policy="latest", limit=300))
        replaced = COUNTERS.replaced
        for i in range(50):
            for sym in ("A", "B", "C"):
                await b.publish("prices", {"sym": sym, "i": i}, event="px", key=sym)
        # Nobody read yet: the channel holds what fitted first, the rest waits per key.
        reader = SSEReader()
        got = await read_until(channel, 6, reader)
        await asyncio.sleep(0.01)
        got += drain(channel, reader)
        last = {}
        for p in got:
            doc = __import__("json").loads(p.data)
            last[doc["sym"]] = doc["i"]
        assert last == {"A": 49, "B": 49, "C": 49}
        assert len(got) < 20  # not all 150
        assert COUNTERS.replaced - replaced > 100
        ids = [p.last_event_id for p in got]
        assert ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))


async def test_disconnect_pauses_a_full_subscriber_and_catches_it_up_from_the_log() -> None:
    async with Broadcast(["t"], replay=10_000) as b:
        options = FeedOptions(policy="disconnect", limit=1024, disconnect_after=5)
        channel = options.channel()
        sub = await b.subscribe("t", channel, options)
        ids = [await b.publish("t", {"i": i, "pad": "x" * 50}) for i in range(200)]
        assert sub.state is State.OVERFLOWED
        assert channel.buffered <= 1024 + 100  # the limit, plus one event
        got = await read_until(channel, 200, SSEReader())
        assert [p.last_event_id for p in got] == ids  # no gap, no duplicate
        assert sub.state is State.LIVE


async def test_disconnect_cuts_a_subscriber_that_stays_full() -> None:
    async with Broadcast(["t"]) as b:
        options = FeedOptions(policy="disconnect", limit=512, disconnect_after=0.1)
        channel = options.channel()
        sub = await b.subscribe("t", channel, options)
        cut = COUNTERS.cut
        for i in range(50):
            await b.publish("t", {"i": i, "pad": "x" * 50})
        await asyncio.sleep(0.3)
        assert sub.state is State.CLOSED
        assert channel.closed and isinstance(channel.error, SlowSubscriber)
        assert COUNTERS.cut == cut + 1
        assert b.subscribers("t") == 0
        with pytest.raises(SlowSubscriber):
            async for _ in channel:
                pass


async def test_close_ends_every_subscription_and_further_subscribes_fail() -> None:
    b = Broadcast(["t"])
    await b.start()
    sub = await b.subscribe("t", Channel())
    await b.aclose()
    assert sub.state is State.CLOSED
    from sluicegate.events.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        await b.subscribe("t", Channel())
    with pytest.raises(BackendUnavailable):
        await b.publish("t", "after the end")


def test_the_transition_table_is_closed_and_illegal_moves_raise() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.CLOSED] == frozenset()
    b = Broadcast(["t"])
    sub = Subscription(b, "t", Channel(), FeedOptions())
    with pytest.raises(RuntimeError, match="NEW to OVERFLOWED"):
        sub._move(State.OVERFLOWED)
    sub._move(State.LIVE)
    with pytest.raises(RuntimeError, match="LIVE to CATCHING_UP"):
        sub._move(State.CATCHING_UP)


def test_a_closed_channel_does_not_break_the_feed() -> None:
    async def run() -> None:
        async with Broadcast(["t"]) as b:
            gone, alive = Channel(), Channel()
            await b.subscribe("t", gone)
            await b.subscribe("t", alive)
            gone.close()
            await b.publish("t", "x")  # must not raise ChannelClosed
            assert len(drain(alive)) == 1

    asyncio.run(run())
    assert ChannelClosed  # the error the feed must swallow


async def test_a_publish_from_inside_a_send_reaches_everyone_after_the_event_being_sent() -> None:
    # A send wrapper that publishes (an audit trail, say) runs inside the fan-out of
    # the event it sends: its event must wait for that fan-out to end, or the
    # subscribers after it would get the new event first and skip the one being sent.
    from sluicegate.events import EventStream

    broadcast = Broadcast(["t"])
    bodies: list[list[bytes]] = [[], [], []]
    published_inner = False

    def sender(i: int) -> Any:
        async def send(message: dict[str, Any]) -> None:
            nonlocal published_inner
            body = message.get("body", b"")
            bodies[i].append(body)
            if i == 0 and b"outer" in body and not published_inner:
                published_inner = True
                await broadcast.publish("t", "inner")

        return send

    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    tasks = [
        asyncio.create_task(EventStream(broadcast.feed("t"))(scope, receive, sender(i)))
        for i in range(3)
    ]
    for _ in range(100):
        if broadcast.subscribers("t") == 3:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # every pump waits: the event goes out inside publish
    await broadcast.publish("t", "outer")
    for _ in range(50):
        if all(b"inner" in b"".join(got) for got in bodies):
            break
        await asyncio.sleep(0.01)
    await broadcast.aclose()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    for got in bodies:
        wire = b"".join(got)
        assert wire.count(b"data: outer") == 1 and wire.count(b"data: inner") == 1
        assert wire.index(b"data: outer") < wire.index(b"data: inner")
