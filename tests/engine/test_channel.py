"""The channel's decisions, without sockets."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import FLUSH, Channel, ChannelClosed, ChannelFull, ConfigError


def drain(channel: Channel, max_bytes: int = 1 << 20) -> list[bytes]:
    out = []
    while (chunk := channel.take(max_bytes)) is not None:
        out.append(bytes(chunk))
        channel.release(len(out[-1]))
    return out


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="limit"):
        Channel(0)
    with pytest.raises(ConfigError, match="policy"):
        Channel(10, "drop")  # type: ignore[arg-type]


def test_small_chunks_are_coalesced_and_large_ones_sliced_without_copy() -> None:
    ch = Channel(1 << 20)
    for _ in range(10):
        ch.put_nowait(b"abc")
    big = b"x" * 10_000
    ch.put_nowait(big)
    first = ch.take(4096)
    assert bytes(first or b"") == b"abc" * 10
    second = ch.take(4096)
    assert isinstance(second, memoryview) and second.obj is big and len(second) == 4096
    assert ch.buffered == 30 + 10_000


def test_flush_ends_a_message() -> None:
    ch = Channel(1 << 20)
    ch.put_nowait(b"event: a\n\n")
    ch.flush()
    ch.put_nowait(b"event: b\n\n")
    assert drain(ch) == [b"event: a\n\n", b"event: b\n\n"]


def test_budget_counts_bytes_in_flight_until_released() -> None:
    ch = Channel(100)
    assert ch.put_nowait(b"x" * 60)
    taken = ch.take(1000)
    assert taken is not None and ch.buffered == 60
    assert not ch.put_nowait(b"y" * 60)  # accepted, but no room for more
    ch.release(60)
    assert ch.buffered == 60 and ch.has_room


def test_drop_oldest_keeps_the_newest_whole_chunks() -> None:
    ch = Channel(10, "drop_oldest")
    for i in range(6):
        ch.put_nowait(bytes([65 + i]) * 4)
    assert drain(ch) == [b"EEEEFFFF"]
    assert (ch.drops, ch.dropped_bytes, ch.bytes_in) == (4, 16, 24)


def test_drop_newest_keeps_the_oldest() -> None:
    ch = Channel(10, "drop_newest")
    for i in range(6):
        ch.put_nowait(bytes([65 + i]) * 4)
    assert drain(ch) == [b"AAAABBBB"]
    assert ch.drops == 4


def test_drop_never_splits_a_chunk_that_started_to_leave() -> None:
    ch = Channel(10, "drop_oldest")
    ch.put_nowait(b"A" * 8)
    part = ch.take(3)  # 3 bytes in flight, 5 left of the same chunk
    assert part is not None
    ch.put_nowait(b"B" * 4)  # would need the rest of A dropped: it drops B instead
    ch.release(3)
    assert drain(ch) == [b"AAAAA"]
    assert ch.drops == 1


def test_error_policy_raises_channel_full() -> None:
    ch = Channel(10, "error")
    ch.put_nowait(b"x" * 8)
    with pytest.raises(ChannelFull):
        ch.put_nowait(b"y" * 8)


def test_put_after_close_raises() -> None:
    ch = Channel(10)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.put_nowait(b"x")


async def test_wait_policy_suspends_the_producer_until_release() -> None:
    ch = Channel(10)
    await ch.put(b"x" * 10)
    blocked = asyncio.create_task(ch.put(b"y"))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    chunk = ch.take(100)
    assert chunk is not None
    ch.release(len(chunk))
    await asyncio.wait_for(blocked, 1)
    assert drain(ch) == [b"y"]


async def test_put_threadsafe_blocks_the_thread_until_there_is_room() -> None:
    ch = Channel(10)
    ch.put_nowait(b"x" * 10)
    done = threading.Event()

    def producer() -> None:
        ch.put_threadsafe(b"y")
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    await asyncio.sleep(0.05)
    assert not done.is_set()
    chunk = ch.take(100)
    assert chunk is not None
    ch.release(len(chunk))
    assert await asyncio.to_thread(done.wait, 2)
    t.join()
    with pytest.raises(ChannelFull):
        ch.put_nowait(b"z" * 20)
        ch.put_threadsafe(b"w", timeout=0.01)


async def test_async_iteration_reads_until_close() -> None:
    ch = Channel(64)

    async def produce() -> None:
        for i in range(5):
            await ch.put(str(i).encode() * 30)
        ch.close()

    task = asyncio.create_task(produce())
    got = b"".join([bytes(c) async for c in ch])
    await task
    assert got == b"".join(str(i).encode() * 30 for i in range(5))


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5000), max_size=60),
    limit=st.integers(1, 4096),
    takes=st.lists(st.integers(1, 3000), min_size=1, max_size=20),
    flushes=st.sets(st.integers(0, 60)),
)
def test_any_chunk_sizes_come_out_identical_within_budget(
    sizes: list[int], limit: int, takes: list[int], flushes: set[int]
) -> None:
    ch = Channel(limit)
    chunks = [bytes([i % 251 + 1]) * n for i, n in enumerate(sizes)]
    out = bytearray()
    pending = list(chunks)
    step = 0
    while pending or not ch.exhausted:
        # The wait policy's contract: a producer puts only while there is room, so
        # what is held never passes the limit by more than the chunk just put.
        while pending and ch.has_room:
            chunk = pending.pop(0)
            before = ch.buffered
            ch.put_nowait(chunk)
            assert ch.buffered <= max(before, limit - 1) + len(chunk)
            if len(chunks) - len(pending) in flushes:
                ch.flush()
        if not pending:
            ch.close()
        got = ch.take(takes[step % len(takes)])
        step += 1
        if got is not None:
            assert len(got) <= takes[(step - 1) % len(takes)]
            out += got
            ch.release(len(got))
    assert bytes(out) == b"".join(chunks)
    assert ch.buffered == 0 and ch.bytes_in == ch.bytes_out == len(out)
    assert FLUSH is not None


async def test_close_wakes_a_producer_waiting_for_room() -> None:
    ch = Channel(10)
    ch.put_nowait(b"x" * 10)
    waiting = asyncio.create_task(ch.wait_room())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    ch.close(RuntimeError("reader gone"))
    await asyncio.wait_for(waiting, 1)
