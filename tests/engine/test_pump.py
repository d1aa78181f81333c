"""The pump driven by scripted fakes of a server's ``send``, without sockets.

The fakes play every way a server's ``send()`` behaves: it accepts at once, blocks
and then accepts, raises ``OSError`` (ASGI 2.4, the client left), returns an
awaitable that is not a coroutine (granian), returns at once after the client left
(ASGI 2.3), blocks until the client leaves, or is cancelled with the request.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import StreamResponse
from sluicegate.engine.channel import Channel
from sluicegate.engine.metrics import StreamMetrics
from sluicegate.engine.pump import TRANSITIONS, IllegalTransition, Pump, PumpState
from sluicegate.errors import ClientDisconnected

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}


class EmptyAwaitable:
    """Done at once, and its iterator has no ``send()``: granian's ``PyEmptyAwaitable``."""

    def __await__(self) -> Iterator[None]:
        return self

    def __iter__(self) -> Iterator[None]:
        return self

    def __next__(self) -> None:
        raise StopIteration


class FutureAwaitable:
    """Waits for a future, through an iterator with no ``send()`` or ``throw()``."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def __await__(self) -> Iterator[Any]:
        return self

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.future.done():
            raise StopIteration
        self.future._asyncio_future_blocking = True
        return self.future


class Client:
    """Records what was sent; leaves (``http.disconnect``) when told to."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    @property
    def body(self) -> bytes:
        return b"".join(bytes(m.get("body", b"")) for m in self.messages[1:])

    @property
    def endings(self) -> int:
        return sum(1 for m in self.messages[1:] if not m.get("more_body", False))

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def record(self, message: dict[str, Any]) -> None:
        if "body" in message:
            message = {**message, "body": bytes(message["body"])}
        self.messages.append(message)


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i % 256]) * size


async def test_a_send_whose_awaitable_is_not_a_coroutine_is_taken_at_once() -> None:
    client = Client()

    def send(message: dict[str, Any]) -> EmptyAwaitable:
        client.record(message)
        return EmptyAwaitable()

    await StreamResponse(chunks(100, 1024))(SCOPE, client.receive, send)
    assert client.body == b"".join(bytes([i]) * 1024 for i in range(100))
    assert client.endings == 1


async def test_a_send_whose_awaitable_is_not_a_coroutine_may_wait() -> None:
    client = Client()
    loop = asyncio.get_running_loop()

    def send(message: dict[str, Any]) -> EmptyAwaitable | FutureAwaitable:
        client.record(message)
        if message["type"] == "http.response.start":
            return EmptyAwaitable()
        future = loop.create_future()
        loop.call_later(0.001, future.set_result, None)
        return FutureAwaitable(future)

    await StreamResponse(chunks(1, 1 << 20))(SCOPE, client.receive, send)
    assert client.body == bytes(1 << 20)
    assert client.endings == 1


async def test_a_send_that_returns_at_once_after_a_disconnect_stops_the_producer() -> None:
    client = Client()
    made = 0
    closed = False

    async def endless() -> AsyncIterator[bytes]:
        nonlocal made, closed
        try:
            while True:
                made += 1
                yield b"x" * 65536
        finally:
            closed = True

    async def send(message: dict[str, Any]) -> None:
        # ASGI 2.3: after the client left, send() returns at once and drops the bytes.
        client.record(message)
        if len(client.messages) == 10:
            client.gone.set()

    await asyncio.wait_for(StreamResponse(endless())(SCOPE, client.receive, send), 10)
    assert closed
    # Message 10 let the client go; the chunk being made then, one more at most.
    assert made <= 9 + 2
    assert client.endings == 0


# -- the pump itself, with scripted sends and producers --------------------------------

ACCEPT, BLOCK, EMPTY, FUTURE, OSERROR = "accept", "block", "empty", "future", "oserror"


@dataclass
class Run:
    """What one scripted run of a pump did."""

    pump: Pump
    messages: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    #: the most bytes the channel held while the producer was asked for a chunk
    worst_at_pull: int = 0

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self.messages)

    @property
    def endings(self) -> int:
        return sum(1 for m in self.messages if not m["more_body"])


async def drive(
    sizes: list[int],
    waits: list[bool],
    sends: list[str],
    *,
    fail: bool = False,
    limit: int = 4096,
) -> tuple[Run, bytes]:
    """Run a pump over a producer of ``sizes`` whose sends follow ``sends`` (then accept)."""
    loop = asyncio.get_running_loop()
    channel = Channel(limit)
    script = iter(sends)
    gone = False
    run: Run

    def send(message: dict[str, Any]) -> Any:
        nonlocal gone
        kind = next(script, ACCEPT)
        if gone or kind == OSERROR:
            gone = True
            return _raise(OSError("connection reset"))
        if message["type"] == "http.response.body":
            run.messages.append({**message, "body": bytes(message["body"])})
        if kind == EMPTY:
            return EmptyAwaitable()
        if kind == FUTURE:
            future = loop.create_future()
            loop.call_later(0.001, future.set_result, None)
            return FutureAwaitable(future)
        if kind == BLOCK:
            return asyncio.sleep(0.001)
        return _accepted()

    async def start(size: int | None) -> None:
        return None

    run = Run(Pump(channel, start, send, StreamMetrics(), max_message=limit))
    made = bytearray()

    async def producer() -> AsyncIterator[bytes]:
        for i, n in enumerate(sizes):
            run.worst_at_pull = max(run.worst_at_pull, channel.buffered)
            chunk = bytes([i % 251 + 1]) * n
            made.extend(chunk)
            yield chunk
            if waits[i % len(waits)]:
                await asyncio.sleep(0)
        if fail:
            raise RuntimeError("the producer failed")

    try:
        await asyncio.wait_for(run.pump.run_iterator(producer(), "utf-8"), 20)
    except Exception as exc:
        run.error = exc
    return run, bytes(made)


async def _accepted() -> None:
    return None


async def _raise(exc: BaseException) -> None:
    raise exc


SEND_KINDS = st.sampled_from([ACCEPT, ACCEPT, BLOCK, EMPTY, FUTURE, OSERROR])


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 10_000), max_size=25),
    waits=st.lists(st.booleans(), min_size=1, max_size=5),
    sends=st.lists(SEND_KINDS, max_size=30),
    fail=st.booleans(),
    limit=st.integers(1, 8192),
)
def test_any_producer_and_any_server_give_a_whole_body_or_an_honest_failure(
    sizes: list[int], waits: list[bool], sends: list[str], fail: bool, limit: int
) -> None:
    run, made = asyncio.run(drive(sizes, waits, sends, fail=fail, limit=limit))
    # In order and intact, whatever happened: a prefix of what was made.
    assert made.startswith(run.body)
    # A producer is asked for a chunk only while the budget has room.
    assert run.worst_at_pull < limit
    if run.error is None:
        assert run.body == made
        assert run.endings == 1 and not run.messages[-1]["more_body"]
        assert run.pump.state is PumpState.COMPLETE
    else:
        assert run.endings == 0
        assert run.pump.state is PumpState.FAILED
        if OSERROR in sends and isinstance(run.error, ClientDisconnected):
            pass  # the client left (ASGI 2.4): reported as such
        else:
            assert fail and isinstance(run.error, RuntimeError), run.error


def test_every_state_but_the_ends_can_fail_and_the_ends_are_final() -> None:
    for state, moves in TRANSITIONS.items():
        if state in (PumpState.COMPLETE, PumpState.FAILED):
            assert moves == frozenset()
        else:
            assert PumpState.FAILED in moves
    assert set(TRANSITIONS) == set(PumpState)


async def test_an_illegal_transition_raises_at_once() -> None:
    run = Run(Pump(Channel(10), _no_start, _accepting_send, StreamMetrics()))
    with pytest.raises(IllegalTransition, match="idle to complete"):
        run.pump._to(PumpState.COMPLETE)
    assert run.pump.state is PumpState.IDLE


async def _no_start(size: int | None) -> None:
    return None


async def _accepting_send(message: dict[str, Any]) -> None:
    return None


# -- the client leaving, through the response ------------------------------------------


async def _endless(state: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        while True:
            state["made"] = state.get("made", 0) + 1
            yield b"x" * 65536
            if state.get("wait"):
                await asyncio.sleep(0)
    finally:
        state["closed"] = True


async def test_a_disconnect_while_a_send_is_blocked_stops_the_producer() -> None:
    client = Client()
    state: dict[str, Any] = {}
    stuck = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        client.record(message)
        if len(client.messages) == 5:
            client.gone.set()
            await stuck  # the client never reads again

    await asyncio.wait_for(StreamResponse(_endless(state))(SCOPE, client.receive, send), 10)
    assert state["closed"]
    assert client.endings == 0
    # Blocked at message 5 (the head and 4 body messages before it): the producer
    # read ahead one budget's worth at most.
    assert state["made"] <= 4 + 2


@pytest.mark.parametrize("wait", [False, True])
async def test_a_request_cancelled_mid_message_closes_the_producer(wait: bool) -> None:
    client = Client()
    state: dict[str, Any] = {"wait": wait}
    stuck = asyncio.get_running_loop().create_future()
    blocked = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        client.record(message)
        if len(client.messages) == 3:
            blocked.set()
            await stuck

    task = asyncio.create_task(StreamResponse(_endless(state))(SCOPE, client.receive, send))
    await asyncio.wait_for(blocked.wait(), 10)
    task.cancel()  # the server shuts down
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert state["closed"]
    assert client.endings == 0


async def test_a_stalled_stream_reports_the_whole_chunk_it_keeps_alive() -> None:
    client = Client()
    stuck = asyncio.get_running_loop().create_future()
    blocked = asyncio.Event()

    async def big() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"b" * (1 << 20)

    async def send(message: dict[str, Any]) -> None:
        client.record(message)
        if len(client.messages) == 5:  # the head, three slices, then the client stalls
            blocked.set()
            await stuck

    response = StreamResponse(big())
    task = asyncio.create_task(response(SCOPE, client.receive, send))
    await asyncio.wait_for(blocked.wait(), 10)
    await asyncio.sleep(0.01)
    assert response.metrics is not None
    # The 1 MiB chunk is alive while its slices wait, whatever the budget (64 KiB).
    assert response.metrics.bytes_buffered >= 1 << 20
    client.gone.set()
    await asyncio.wait_for(task, 10)


async def test_a_chunk_sent_past_the_queue_that_must_wait_is_awaited_in_the_producers_task() -> (
    None
):
    # Such a chunk fills the budget alone: nothing could be read ahead while it waits,
    # so no sender task is started for it, and the producer makes nothing meanwhile.
    client = Client()
    made = 0
    # While a send waits: chunks made, body messages sent so far, the tasks alive.
    seen_while_blocked: list[tuple[int, int, list[str]]] = []

    async def body() -> AsyncIterator[bytes]:
        nonlocal made
        for i in range(8):
            made += 1
            yield bytes([i]) * 65536

    async def send(message: dict[str, Any]) -> None:
        client.record(message)
        if len(client.messages) % 3 == 0:  # every third message waits for the client
            await asyncio.sleep(0.002)
            names = [t.get_name() for t in asyncio.all_tasks()]
            seen_while_blocked.append((made, len(client.messages) - 1, names))

    await asyncio.wait_for(StreamResponse(body())(SCOPE, client.receive, send), 10)
    assert client.body == b"".join(bytes([i]) * 65536 for i in range(8))
    assert client.endings == 1
    assert len(seen_while_blocked) >= 2
    for made_then, sent_then, names in seen_while_blocked:
        assert "sluicegate-sender" not in names
        # Nothing made beyond the chunk whose send waits (the last message recorded).
        assert made_then == sent_then


# -- run_channel: a channel fed from the loop's own thread (a broadcast) ---------------


class _Suspensions:
    """Awaits a coroutine and counts how often it suspends (each a trip to the loop)."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.count = 0

    def __await__(self) -> Any:
        step = self.coro.__await__()
        value = next(step)
        while True:
            self.count += 1
            try:
                sent = yield value
            except BaseException as exc:
                value = step.throw(exc)
            else:
                try:
                    value = step.send(sent)
                except StopIteration as stop:
                    return stop.value


async def test_a_woken_relay_sends_and_waits_again_in_one_suspension() -> None:
    channel = Channel(1024, "drop_oldest")
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        bodies.append(message["body"])

    pump = Pump(channel, _no_start, send, StreamMetrics())
    relay = _Suspensions(pump.run_channel())
    task = asyncio.create_task(_await(relay))
    events = 20
    for i in range(events):
        for _ in range(3):  # the relay is back to waiting, as between live events
            await asyncio.sleep(0)
        channel.put_nowait(b"event %d\n\n" % i)
    for _ in range(3):
        await asyncio.sleep(0)
    channel.close()
    await asyncio.wait_for(task, 10)
    assert bodies[:-1] == [b"event %d\n\n" % i for i in range(events)]
    assert bodies[-1] == b""
    # One trip to the loop per event: waiting for it is the turn after the one before
    # (a turn and then a wait would be two).
    assert relay.count <= events + 2


async def test_a_relay_turns_the_loop_between_messages_while_the_channel_stays_full() -> None:
    channel = Channel(1 << 20)
    for _ in range(5):
        channel.put_nowait(b"x" * 100)
        channel.flush()
    turns_seen: list[int] = []
    turns = 0

    async def send(message: dict[str, Any]) -> None:
        turns_seen.append(turns)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    pump = Pump(channel, _no_start, send, StreamMetrics())
    channel.close()
    await asyncio.wait_for(pump.run_channel(), 10)
    counter.cancel()
    body = turns_seen[:-1]
    assert len(body) == 5
    # Never two messages without the loop turning in between (issue 14).
    assert all(b > a for a, b in itertools.pairwise(body))


async def _await(awaitable: Any) -> None:
    await awaitable


# -- run_channel: events delivered straight to a waiting pump ----------------------------

_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def _relay(
    channel: Channel, send: Any, counted: _Suspensions | None = None
) -> tuple[Pump, asyncio.Task[None]]:
    """A pump relaying ``channel``, in a task of its own context, as StreamResponse
    runs it (with direct delivery on); its head is already out. With ``counted``, its
    run is that, so that its suspensions are counted."""
    pump = Pump(channel, _no_start, send, StreamMetrics())
    context = contextvars.copy_context()
    context.run(_WHO.set, "the pump")
    pump.context = context
    channel.put_nowait(b": open\n\n")
    if counted is not None:
        counted.coro = pump.run_channel()
        return pump, asyncio.create_task(_await(counted), context=context)
    return pump, asyncio.create_task(pump.run_channel(), context=context)


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_waiting_relay_sends_delivered_events_in_the_producers_turn() -> None:
    channel = Channel(1024, "drop_oldest")
    seen: list[tuple[bytes, asyncio.Task[Any] | None, str]] = []

    async def send(message: dict[str, Any]) -> None:
        seen.append((bytes(message["body"]), asyncio.current_task(), _WHO.get()))

    relay = _Suspensions(None)
    pump, task = _relay(channel, send, relay)
    await _turns()
    suspended = relay.count
    for i in range(20):
        assert channel.deliver(b"event %d\n\n" % i) == 0
    # Every event went out at once, from this task, in the context the pump's task
    # runs in; nothing was queued, and the pump's task never woke.
    assert relay.count == suspended
    assert [body for body, _, _ in seen[1:]] == [b"event %d\n\n" % i for i in range(20)]
    me = asyncio.current_task()
    assert all(t is me and who == "the pump" for _, t, who in seen[1:])
    assert channel.buffered == 0 and channel.bytes_out == channel.bytes_in
    assert pump.metrics.bytes_sent == sum(len(body) for body, _, _ in seen)
    channel.close()
    await asyncio.wait_for(task, 10)
    assert seen[-1][0] == b""


async def test_without_a_context_the_relay_only_waits() -> None:
    channel = Channel(1024, "drop_oldest")
    senders: list[asyncio.Task[Any] | None] = []

    async def send(message: dict[str, Any]) -> None:
        senders.append(asyncio.current_task())

    pump = Pump(channel, _no_start, send, StreamMetrics())  # direct delivery off
    channel.put_nowait(b": open\n\n")
    task = asyncio.create_task(pump.run_channel())
    await _turns()
    channel.deliver(b"event\n\n")
    assert channel.queued == len(b"event\n\n")  # queued; the pump's task sends it
    await _turns()
    assert senders == [task, task]
    channel.close()
    await asyncio.wait_for(task, 10)


async def test_a_delivered_event_whose_send_must_wait_is_finished_by_the_pump() -> None:
    channel = Channel(1024, "drop_oldest")
    gate = asyncio.get_running_loop().create_future()
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        # A wrapper that sets and resets a context variable around the inner send: its
        # token must come back in the context it was made in.
        token = _WHO.set("sending")
        try:
            if message["body"] == b"slow\n\n":
                await gate
            bodies.append(bytes(message["body"]))
        finally:
            _WHO.reset(token)

    _, task = _relay(channel, send)
    await _turns()
    channel.deliver(b"slow\n\n")
    # The pump owns the half-run send now: later events queue behind it, in order,
    # and count against the budget with it.
    assert channel.buffered == len(b"slow\n\n")
    channel.deliver(b"next\n\n")
    assert channel.queued == len(b"next\n\n")
    await _turns()
    gate.set_result(None)
    await _turns(5)
    assert bodies == [b": open\n\n", b"slow\n\n", b"next\n\n"]
    assert channel.buffered == 0
    # Back to waiting: the next event goes straight out again.
    channel.deliver(b"last\n\n")
    assert bodies[-1] == b"last\n\n"
    channel.close()
    await asyncio.wait_for(task, 10)


async def test_a_relay_cancelled_with_a_send_half_run_closes_it_and_frees_its_bytes() -> None:
    channel = Channel(1024, "drop_oldest")
    cleaned: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if message["body"] == b"stuck\n\n":
            try:
                await asyncio.get_running_loop().create_future()  # never
            finally:
                cleaned.append("the send's finally")

    pump, task = _relay(channel, send)
    await _turns()
    channel.deliver(b"stuck\n\n")
    task.cancel()  # the client left, in the same turn
    # A cancelled relay takes nothing more, even before its task has run again.
    channel.deliver(b"after\n\n")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert cleaned == ["the send's finally"]
    assert channel.buffered == len(b"after\n\n")  # only the queued one: no bytes lost
    assert pump.metrics.bytes_sent == len(b": open\n\n")


async def test_a_relay_cancelled_while_it_waits_takes_nothing_more() -> None:
    channel = Channel(1024, "drop_oldest")
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        bodies.append(bytes(message["body"]))

    _, task = _relay(channel, send)
    await _turns()
    task.cancel()  # the client left; the task has not run since
    channel.deliver(b"after\n\n")
    assert bodies == [b": open\n\n"]
    assert channel.queued == len(b"after\n\n")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def test_a_delivered_event_to_a_client_that_left_fails_the_pump_not_the_publisher() -> None:
    channel = Channel(1024, "drop_oldest")
    sent = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if sent > 1:
            raise OSError("connection reset")

    pump, task = _relay(channel, send)
    await _turns()
    channel.deliver(b"event\n\n")  # raises nothing here
    channel.deliver(b"queued\n\n")  # the pump is woken: this one waits in the queue
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(task, 10)
    assert pump.state is PumpState.FAILED
    assert sent == 2


async def test_a_send_cancelled_at_once_fails_its_pump_and_not_the_publisher() -> None:
    channel = Channel(1024, "drop_oldest")

    async def send(message: dict[str, Any]) -> None:
        if message["body"] == b"event\n\n":
            raise asyncio.CancelledError

    _, task = _relay(channel, send)
    await _turns()
    channel.deliver(b"event\n\n")  # does not raise here
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def test_deliver_queues_when_nobody_waits_to_take() -> None:
    channel = Channel(1024, "drop_oldest")
    assert channel.deliver(b"a" * 10) == 0
    assert channel.queued == 10
    assert channel.take(100) == b"a" * 10
    # Past the budget, the leaky policy drops the oldest whole chunk, and says so.
    for _ in range(102):
        channel.deliver(b"b" * 10)
    assert channel.deliver(b"c" * 10) == 1
    assert channel.buffered <= 1024
