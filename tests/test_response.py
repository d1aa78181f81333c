"""StreamResponse driven in-process: commit, sizes, errors, cleanup, the budget."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from sluicegate import FLUSH, Channel, ConfigError, PullSource, StreamResponse
from tests.asgi import Exchange, call


async def test_two_writes_with_a_turn_between_leave_as_two_messages() -> None:
    async def hello() -> AsyncIterator[str]:
        yield "Hello"
        await asyncio.sleep(0)
        yield "World"

    ex = await call(StreamResponse(hello(), media_type="text/plain"))
    assert ex.bodies == [b"Hello", b"World"]
    assert ex.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-length" not in ex.headers


async def test_two_writes_in_one_turn_leave_as_one_message_with_a_length() -> None:
    async def hello() -> AsyncIterator[str]:
        yield "Hello"
        yield "World"

    ex = await call(StreamResponse(hello()))
    assert ex.bodies == [b"HelloWorld"]
    # The body ended before the commit, so its length is known.
    assert ex.headers["content-length"] == "10"
    assert ex.complete


async def test_a_chunk_is_never_held_back_waiting_for_more() -> None:
    release = asyncio.Event()
    seen: list[bytes] = []

    async def slow() -> AsyncIterator[bytes]:
        yield b"first"
        await release.wait()
        yield b"second"

    ex = Exchange()

    def on_send(message: dict[str, object]) -> None:
        if message.get("body"):
            seen.append(message["body"])  # type: ignore[arg-type]
            release.set()

    ex.on_send = on_send
    await asyncio.wait_for(call(StreamResponse(slow()), exchange=ex), 2)
    assert seen == [b"first", b"second"]


@pytest.mark.parametrize(
    ("content", "length"),
    [(b"abc", "3"), ("héllo", "6"), (bytearray(b"xy"), "2"), (memoryview(b"12345"), "5")],
)
async def test_in_memory_bodies_have_a_content_length(content: object, length: str) -> None:
    ex = await call(StreamResponse(content))  # type: ignore[arg-type]
    assert ex.headers["content-length"] == length
    assert ex.complete


async def test_files_stream_in_bounded_reads_with_a_length(tmp_path: object) -> None:
    data = bytes(range(256)) * 4000  # 1 MB
    path = tmp_path / "f.bin"  # type: ignore[operator]
    path.write_bytes(data)
    f = open(path, "rb")  # noqa: ASYNC230, SIM115
    ex = await call(StreamResponse(f))
    assert ex.body == data and ex.headers["content-length"] == str(len(data))
    assert max(len(b) for b in ex.bodies) <= 64 * 1024
    assert f.closed


async def test_chunk_types_and_charset() -> None:
    async def mixed() -> AsyncIterator[object]:
        yield b"a"
        yield bytearray(b"b")
        yield memoryview(b"c")
        yield "é"

    ex = await call(StreamResponse(mixed(), charset="latin-1"))  # type: ignore[arg-type]
    assert ex.body == b"abc\xe9"


async def test_a_chunk_that_is_not_bytes_fails_before_the_commit_with_500() -> None:
    async def wrong() -> AsyncIterator[object]:
        yield 42

    ex = await call(StreamResponse(wrong()))  # type: ignore[arg-type]
    assert ex.status == 500


async def test_failure_before_the_first_chunk_is_a_real_500_problem() -> None:
    async def broken() -> AsyncIterator[bytes]:
        raise RuntimeError("database is down: password=hunter2")
        yield b""

    ex = await call(StreamResponse(broken()))
    assert ex.status == 500
    assert ex.headers["content-type"] == "application/problem+json"
    doc = json.loads(ex.body)
    assert doc["status"] == 500 and doc["error"] == "RuntimeError"
    assert "hunter2" not in ex.body.decode()


async def test_failure_after_the_commit_aborts_without_the_final_message() -> None:
    async def half() -> AsyncIterator[bytes]:
        yield b"x" * 10
        await asyncio.sleep(0.01)  # the first chunk leaves meanwhile: headers are out
        raise RuntimeError("o_O")

    ex = Exchange()
    with pytest.raises(RuntimeError, match="o_O") as info:
        await call(StreamResponse(half()), exchange=ex)
    assert ex.status == 200 and ex.body == b"x" * 10
    assert not ex.complete
    assert any("aborted after 10 bytes" in note for note in info.value.__notes__)


async def test_head_sends_headers_and_never_runs_the_producer() -> None:
    ran = False

    def gen() -> Iterator[bytes]:
        nonlocal ran
        ran = True
        yield b"x"

    ex = await call(StreamResponse(b"12345"), method="HEAD")
    assert ex.headers["content-length"] == "5" and ex.body == b""
    await call(StreamResponse(gen()), method="HEAD")
    assert not ran


async def test_sync_iterables_run_in_a_thread_in_batches() -> None:
    threads: set[int] = set()

    def rows() -> Iterator[str]:
        for i in range(20_000):
            threads.add(threading.get_ident())
            yield f"{i},row\n"

    ex = await call(StreamResponse(rows(), media_type="text/csv"))
    assert ex.body == "".join(f"{i},row\n" for i in range(20_000)).encode()
    assert threading.get_ident() not in threads
    # Coalesced: far fewer messages than rows.
    assert len(ex.bodies) < 2_000


class Countdown(PullSource):
    """The article's custom Readable: _read() is called only when there is room."""

    def __init__(self, chunks: int, size: int) -> None:
        super().__init__()
        self.left = chunks
        self.chunk = b"z" * size
        self.reads = 0
        self.destroyed = False

    async def _read(self, size: int) -> None:
        self.reads += 1
        while self.left:
            self.left -= 1
            await asyncio.sleep(0)
            if not self.push(self.chunk):
                return
        self.push(None)

    def destroy(self) -> None:
        self.destroyed = True


async def test_pull_source_is_read_only_when_the_consumer_wants_more() -> None:
    src = Countdown(chunks=50, size=10_000)
    ex = Exchange()

    async def on_send(message: dict[str, object]) -> None:
        # Never more than the budget plus one chunk has been produced ahead of us.
        sent = sum(len(m.get("body", b"")) for m in ex.messages)  # type: ignore[misc, arg-type]
        produced = (50 - src.left) * 10_000
        assert produced - sent <= 64 * 1024 + 10_000
        await asyncio.sleep(0.001)  # a client slower than the producer

    ex.on_send = on_send
    await call(StreamResponse(src), exchange=ex)
    assert len(ex.body) == 500_000 and ex.complete
    assert src.reads > 1 and src.destroyed


async def test_a_leaky_channel_drops_for_a_slow_client_and_the_producer_never_waits() -> None:
    channel = Channel(limit=1000, policy="drop_oldest")
    gate = asyncio.Event()

    async def produce() -> None:
        for i in range(100):
            channel.put_nowait(b"%04d" % i * 25)  # 100-byte records
            await asyncio.sleep(0)
        channel.close()
        gate.set()

    ex = Exchange()

    async def slow_client(message: dict[str, object]) -> None:
        await gate.wait()  # the client reads nothing until the producer is done

    ex.on_send = slow_client
    task = asyncio.create_task(produce())
    await call(StreamResponse(channel), exchange=ex)
    await task
    assert channel.drops > 0
    records = [ex.body[i : i + 100] for i in range(0, len(ex.body), 100)]
    assert all(len(set(r[:4] for _ in r)) == 1 for r in records)  # whole records only
    assert records[-1].startswith(b"0099")


async def test_flush_marks_message_boundaries() -> None:
    async def events() -> AsyncIterator[object]:
        yield "data: 1\n\n"
        yield FLUSH
        yield "data: 2\n\n"

    ex = await call(StreamResponse(events(), media_type="text/event-stream"))  # type: ignore[arg-type]
    assert ex.bodies == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        StreamResponse(b"", high_water_mark=0)
    with pytest.raises(TypeError, match="binary mode"):
        StreamResponse(io.StringIO("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot stream"):
        StreamResponse(42)  # type: ignore[arg-type]


async def _cleanup_case(kind: str) -> tuple[bool, int]:
    """Disconnect after the first message; return (finally ran, chunks made after)."""
    finalized = asyncio.Event() if kind != "sync" else None
    done = threading.Event()
    made_after = 0
    gone = False

    async def agen() -> AsyncIterator[bytes]:
        nonlocal made_after
        try:
            while True:
                made_after += gone
                yield b"a" * 1000
                await asyncio.sleep(0.01)
        finally:
            done.set()

    def sgen() -> Iterator[bytes]:
        nonlocal made_after
        try:
            while True:
                made_after += gone
                yield b"s" * 1000
                threading.Event().wait(0.01)
        finally:
            done.set()

    class Src(PullSource):
        async def _read(self, size: int) -> None:
            nonlocal made_after
            made_after += gone
            await asyncio.sleep(0.01)
            self.push(b"p" * 1000)

        def destroy(self) -> None:
            done.set()

    content = {"async": agen, "sync": sgen, "pull": Src}[kind]()
    ex = Exchange()

    def on_send(message: dict[str, object]) -> None:
        nonlocal gone
        if message.get("body"):
            gone = True
            ex.disconnect.set()

    ex.on_send = on_send
    await asyncio.wait_for(call(StreamResponse(content), exchange=ex), 5)  # type: ignore[arg-type]
    del finalized
    return done.is_set(), made_after


@pytest.mark.parametrize("kind", ["async", "sync", "pull"])
async def test_disconnect_closes_the_producer(kind: str) -> None:
    closed, made_after = await _cleanup_case(kind)
    assert closed
    assert made_after <= 1


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300_000), max_size=25),
    hwm=st.sampled_from([1024, 16 * 1024, 64 * 1024]),
    turn=st.booleans(),
)
def test_any_chunk_sizes_arrive_identical_and_within_budget(
    sizes: list[int], hwm: int, turn: bool
) -> None:
    chunks = [bytes([i % 250 + 1]) * n for i, n in enumerate(sizes)]
    produced = 0

    async def gen() -> AsyncIterator[bytes]:
        nonlocal produced
        for c in chunks:
            produced += len(c)
            yield c
            if turn:
                await asyncio.sleep(0)

    async def run() -> Exchange:
        ex = Exchange()
        response = StreamResponse(gen(), high_water_mark=hwm)

        def on_send(message: dict[str, object]) -> None:
            body = message.get("body", b"")
            # Up to the burst size while the server takes every message at once.
            assert len(body) <= response.burst_message  # type: ignore[arg-type]
            sent = sum(len(m.get("body", b"")) for m in ex.messages)  # type: ignore[misc, arg-type]
            largest = max(sizes, default=0)
            # Held = produced but not yet accepted by the server: within the mark,
            # beyond the producer's current chunk.
            assert produced - sent <= hwm + largest

        ex.on_send = on_send
        return await call(response, exchange=ex)

    ex = asyncio.run(run())
    assert ex.body == b"".join(chunks)
    assert ex.complete


async def test_works_as_a_starlette_response() -> None:
    async def export(request: object) -> StreamResponse:
        async def rows() -> AsyncIterator[str]:
            for i in range(3):
                yield f"{i}\n"

        return StreamResponse(rows(), media_type="text/csv", headers={"x-export": "yes"})

    app = Starlette(routes=[Route("/export.csv", export)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/export.csv")
    assert r.status_code == 200 and r.text == "0\n1\n2\n"
    assert r.headers["x-export"] == "yes"
    assert r.headers["content-type"] == "text/csv; charset=utf-8"


async def test_a_big_chunk_is_released_before_the_next_is_made() -> None:
    import tracemalloc

    size = 8 * 1024 * 1024

    async def big() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield bytes([i + 1]) * size

    received = 0

    async def send(message: dict[str, object]) -> None:
        nonlocal received
        body = message.get("body", b"")
        received += len(body)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # a client that needs a turn per message

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    scope = {"type": "http", "method": "GET", "path": "/"}
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        await StreamResponse(big())(scope, receive, send)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert received == 3 * size
    # One chunk plus the budget, never two chunks (the article's drain holds two).
    assert peak < 1.5 * size, peak


@pytest.mark.parametrize("slow", [False, True])
async def test_send_raising_oserror_midway_is_a_quiet_client_gone(
    slow: bool, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    from sluicegate.engine.metrics import REGISTRY

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 10_000
            await asyncio.sleep(0)

    calls = 0

    async def send(message: dict[str, object]) -> None:
        nonlocal calls
        calls += 1
        if calls >= 4:
            raise OSError("connection reset")  # ASGI 2.4 servers do this
        if slow:
            await asyncio.sleep(0.001)

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    before = REGISTRY.snapshot()["disconnects"]
    scope = {"type": "http", "method": "GET", "path": "/"}
    await asyncio.wait_for(StreamResponse(endless())(scope, receive, send), 5)
    assert REGISTRY.snapshot()["disconnects"] == before + 1
    await asyncio.sleep(0.01)
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_producer_that_ends_without_awaiting_gets_one_end_and_every_byte() -> None:
    # A turn callback queued while the body ended must not start a second sender.
    async def gen() -> AsyncIterator[bytes]:
        for c in b"abc":
            yield bytes([c]) * 40_000

    ex = Exchange()
    sends = 0
    concurrent = peak = 0

    async def slow(message: dict[str, object]) -> None:
        nonlocal sends, concurrent, peak
        sends += 1
        concurrent += 1
        peak = max(peak, concurrent)
        await asyncio.sleep({2: 0.01, 3: 0.05}.get(sends, 0))
        concurrent -= 1

    ex.on_send = slow
    await call(StreamResponse(gen(), high_water_mark=1 << 20), exchange=ex)
    assert ex.body == b"a" * 40_000 + b"b" * 40_000 + b"c" * 40_000
    assert [m.get("more_body", False) for m in ex.messages[1:]].count(False) == 1
    assert peak == 1


async def test_inband_ending_keeps_what_a_slow_client_had_not_taken_yet() -> None:
    async def rows() -> AsyncIterator[str]:
        for i in range(5):
            yield f'{{"row":{i}}}\n'
        await asyncio.sleep(0)
        raise ValueError("db gone")

    ex = Exchange()

    async def slow(message: dict[str, object]) -> None:
        await asyncio.sleep(0.01)

    ex.on_send = slow
    response = StreamResponse(rows(), media_type="application/x-ndjson", on_error="inband")
    await call(response, exchange=ex)
    lines = ex.body.decode().splitlines()
    assert lines[:5] == [f'{{"row":{i}}}' for i in range(5)]
    assert json.loads(lines[5])["error"] == "ValueError" and ex.complete


def test_messages_grow_only_where_the_server_is_said_to_count_bytes() -> None:
    from sluicegate import defaults
    from sluicegate.engine.pump import BURST_MESSAGE, MAX_MESSAGE

    async def gen() -> AsyncIterator[bytes]:
        yield b""

    assert StreamResponse(gen()).burst_message == MAX_MESSAGE  # granian queues messages
    saved = defaults.burst_message
    defaults.burst_message = BURST_MESSAGE  # what sluicegate serve sets for uvicorn
    try:
        assert StreamResponse(gen()).burst_message == BURST_MESSAGE
        # never more than a few budgets' worth
        assert StreamResponse(gen(), high_water_mark=16 * 1024).burst_message == 64 * 1024
        assert StreamResponse(gen(), max_message=8192).burst_message == 8192
    finally:
        defaults.burst_message = saved
