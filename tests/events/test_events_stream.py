"""EventStream in process (no socket): headers, heartbeats, errors, resume, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sse_support import SSEReader, parse

from sluicegate.errors import ConfigError
from sluicegate.events import Broadcast, Event, EventStream, close_streams, with_shutdown
from sluicegate.events.errors import BackendUnavailable
from sluicegate.protect.guard import GuardPolicy
from tests.asgi import Exchange, call


def lei(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"last-event-id", value.encode())]


async def numbers(n: int, delay: float = 0.0) -> AsyncIterator[Any]:
    for i in range(n):
        yield Event({"i": i}, id=f"0-{i + 1}")
        if delay:
            await asyncio.sleep(delay)


async def test_headers_and_an_opening_block() -> None:
    ex = await call(EventStream(numbers(2), retry=1500))
    assert ex.status == 200 and ex.complete
    assert ex.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert ex.headers["cache-control"] == "no-cache"
    assert ex.headers["x-accel-buffering"] == "no"
    reader = SSEReader()
    events = reader.feed(ex.body.decode())
    assert reader.retry == 1500
    assert [e.last_event_id for e in events] == ["0-1", "0-2"]


async def test_the_head_goes_out_before_the_first_event_is_made() -> None:
    loop = asyncio.get_running_loop()
    times: dict[str, float] = {}

    def record(message: dict[str, Any]) -> None:
        times.setdefault(message["type"], loop.time())

    async def late() -> AsyncIterator[Any]:
        await asyncio.sleep(0.2)
        times["event made"] = loop.time()
        yield "late"

    ex = await call(EventStream(late()), exchange=Exchange(on_send=record))
    assert times["http.response.start"] < times["event made"] - 0.1
    assert "content-length" not in ex.headers
    assert ex.bodies[0] == b":\n\n"  # the opening comment, alone


async def test_a_producer_may_yield_bare_data_of_any_kind() -> None:
    async def mixed() -> AsyncIterator[Any]:
        yield "one\ntwo"
        yield b"bytes"
        yield {"json": [1, 2]}

    events = parse((await call(EventStream(mixed()))).body.decode())
    assert [e.data for e in events] == ["one\ntwo", "bytes", '{"json":[1,2]}']


async def test_heartbeats_only_when_idle() -> None:
    async def slow() -> AsyncIterator[Any]:
        yield "first"
        await asyncio.sleep(0.5)
        yield "second"

    ex = await call(EventStream(slow(), heartbeat=0.1))
    reader = SSEReader()
    events = reader.feed(ex.body.decode())
    assert [e.data for e in events] == ["first", "second"]
    # 0.5 s of silence at 0.1 s: three or four beats (+1: the opening comment); wide
    # margins, the machine is shared.
    assert 1 <= reader.comments - 1 <= 5

    async def busy() -> AsyncIterator[Any]:
        for i in range(30):
            yield i
            await asyncio.sleep(0.01)

    reader = SSEReader()
    reader.feed((await call(EventStream(busy(), heartbeat=0.1))).body.decode())
    assert reader.comments == 1  # the opening one only: never idle for 0.1 s


async def test_the_guard_judges_heartbeats_like_any_bytes() -> None:
    """A client that reads nothing is cut by the stall timeout, even if only heartbeats flow."""
    never = asyncio.Event()
    sent: list[int] = []

    async def stall(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body":
            sent.append(len(message["body"]))
            if len(sent) > 1:
                await never.wait()  # the client stopped reading

    async def idle() -> AsyncIterator[Any]:
        await asyncio.sleep(30)
        yield "never"

    stream = EventStream(idle(), heartbeat=0.05, guard=GuardPolicy(stall_timeout=0.3))
    async with asyncio.timeout(5):
        await call(stream, exchange=Exchange(on_send=stall))
    assert stream.metrics is not None and stream.metrics.state == "timed_out"
    assert sent[1] == 3  # the heartbeat is what waited


async def test_a_failing_producer_ends_with_an_inband_error_event() -> None:
    async def failing() -> AsyncIterator[Any]:
        yield "fine"
        raise LookupError("the feed broke")

    ex = await call(EventStream(failing()))
    assert ex.status == 200 and ex.complete
    events = parse(ex.body.decode())
    assert [e.event for e in events] == ["message", "error"]
    assert '"error":"LookupError"' in events[1].data


async def test_a_callable_gets_the_last_event_id() -> None:
    seen: list[str | None] = []

    def resume(last: str | None) -> AsyncIterator[Any]:
        seen.append(last)
        return numbers(1)

    await call(EventStream(resume), headers=lei("7-3"))
    await call(EventStream(resume))
    assert seen == ["7-3", None]


@pytest.mark.parametrize(
    ("headers", "status", "text"),
    [
        (lei("garbage"), 400, "Last-Event-ID must look like"),
        (lei("1" * 5000 + "-1"), 400, "Last-Event-ID must look like"),
    ],
)
async def test_a_malformed_last_event_id_is_a_400(
    headers: list[tuple[bytes, bytes]], status: int, text: str
) -> None:
    async with Broadcast(["t"]) as b:
        ex = await call(EventStream(b.feed("t")), headers=headers)
    assert ex.status == status
    assert ex.headers["content-type"] == "application/problem+json"
    assert text in ex.body.decode()
    assert len(ex.body) < 400  # the bad id is not echoed whole


async def test_an_unknown_topic_is_a_404_and_a_down_backend_a_503() -> None:
    async with Broadcast(["t"]) as b:
        ex = await call(EventStream(b.feed("nope")))
        assert (ex.status, ex.headers["content-type"]) == (404, "application/problem+json")

        async def down(*args: Any) -> Any:
            raise BackendUnavailable("Redis unavailable (replay): connection refused")

        b.backend.replay = down  # type: ignore[method-assign]
        ex = await call(EventStream(b.feed("t")), headers=lei("0-0"))
        assert ex.status == 503 and ex.headers["retry-after"] == "2"
        assert b.subscribers("t") == 0


async def test_feed_streams_resume_and_end_on_shutdown_with_a_retry_hint() -> None:
    async with Broadcast(["t"]) as b:
        ids = [await b.publish("t", i) for i in range(3)]
        ex = Exchange()
        stream = EventStream(b.feed("t"))
        task = asyncio.create_task(call(stream, exchange=ex, headers=lei(ids[0])))
        await asyncio.sleep(0.02)
        ids.append(await b.publish("t", 3))
        await asyncio.sleep(0.02)
        assert close_streams() == 1
        await asyncio.wait_for(task, 5)
    reader = SSEReader()
    events = reader.feed(ex.body.decode())
    assert [e.last_event_id for e in events[:-1]] == ids[1:]
    assert events[-1].event == "shutdown"
    assert events[-1].last_event_id == ids[-1]  # the final event does not move the id
    assert reader.retry is not None and 1000 <= reader.retry <= 2000
    assert ex.complete


async def test_broadcast_close_ends_its_streams() -> None:
    b = Broadcast(["t"])
    await b.start()
    ex = Exchange()
    task = asyncio.create_task(call(EventStream(b.feed("t")), exchange=ex))
    await asyncio.sleep(0.02)
    await b.aclose(retry=100)
    await asyncio.wait_for(task, 5)
    assert parse(ex.body.decode())[-1].event == "shutdown"


async def test_lifespan_shutdown_closes_open_streams() -> None:
    b = Broadcast(["t"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await EventStream(b.feed("t"))(scope, receive, send)

    wrapped = with_shutdown(app)
    ex = Exchange()
    task = asyncio.create_task(call(wrapped, exchange=ex))
    await asyncio.sleep(0.02)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Any] = []

    async def receive() -> Any:
        await asyncio.sleep(0)
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    await wrapped({"type": "lifespan"}, receive, send)
    await asyncio.wait_for(task, 5)
    assert parse(ex.body.decode())[-1].event == "shutdown"
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}


async def test_client_gone_unsubscribes() -> None:
    async with Broadcast(["t"]) as b:
        ex = Exchange()
        task = asyncio.create_task(call(EventStream(b.feed("t")), exchange=ex))
        await asyncio.sleep(0.02)
        assert b.subscribers("t") == 1
        ex.disconnect.set()
        await asyncio.wait_for(task, 5)
        assert b.subscribers("t") == 0


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_bad_heartbeats_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        EventStream(numbers(1), heartbeat=bad)  # type: ignore[arg-type]


def test_content_that_is_not_events_is_refused() -> None:
    with pytest.raises(ConfigError, match="async iterable"):
        EventStream(b"bytes")  # type: ignore[arg-type]


async def test_a_stream_closed_before_it_runs_sends_only_the_final_event() -> None:
    async with Broadcast(["t"]) as b:
        stream = EventStream(b.feed("t"))
        stream.close()
        ex = await call(stream)
        assert ex.status == 200 and ex.complete
        assert [e.event for e in parse(ex.body.decode())] == ["shutdown"]
        assert b.subscribers("t") == 0


async def test_a_feed_that_breaks_while_the_replay_is_read_is_a_503() -> None:
    async with Broadcast(["t"]) as b:
        real = b.backend.replay

        async def slow_replay(*args: Any) -> Any:
            b._fail("t", ConnectionError("gone"))  # the reader fails meanwhile
            return await real(*args)

        b.backend.replay = slow_replay  # type: ignore[method-assign]
        ex = await call(EventStream(b.feed("t")), headers=lei("0-0"))
        assert ex.status == 503
        assert b.subscribers("t") == 0


async def test_a_cut_disconnect_subscriber_whose_client_reads_nothing_is_hung_up_on() -> None:
    """Without a guard too: the queued events cannot leave, so the response is ended."""
    never = asyncio.Event()

    async def stall(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and message["body"] != b":\n\n":
            await never.wait()  # the client stopped reading after the opening comment

    async with Broadcast(["t"]) as b:
        feed = b.feed("t", policy="disconnect", limit=512, disconnect_after=0.1)
        stream = EventStream(feed, guard=None)
        task = asyncio.create_task(call(stream, exchange=Exchange(on_send=stall)))
        await asyncio.sleep(0.05)
        for i in range(50):
            await b.publish("t", {"i": i, "pad": "x" * 50})
        async with asyncio.timeout(5):
            await task  # returns: not cancelled from outside, not stuck
        assert b.subscribers("t") == 0
        assert stream.metrics is not None and stream.metrics.state != "completed"


async def test_a_cut_subscriber_that_reads_again_gets_its_queued_events_and_an_error() -> None:
    async with Broadcast(["t"], replay=10_000) as b:
        feed = b.feed("t", policy="disconnect", limit=512, disconnect_after=0.1)
        gate = asyncio.Event()

        async def slow(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.body" and message["body"] != b":\n\n":
                await gate.wait()

        ex = Exchange(on_send=slow)
        task = asyncio.create_task(call(EventStream(feed, guard=None), exchange=ex))
        await asyncio.sleep(0.05)
        ids = [await b.publish("t", {"i": i, "pad": "x" * 50}) for i in range(50)]
        await asyncio.sleep(0.15)  # cut by now; the client reads again within the grace
        gate.set()
        async with asyncio.timeout(5):
            await task
        events = parse(ex.body.decode())
        assert events[-1].event == "error" and "SlowSubscriber" in events[-1].data
        got = [e.last_event_id for e in events[:-1]]
        assert got == ids[: len(got)] and got  # a prefix, in order: it resumes after it
        assert ex.complete
