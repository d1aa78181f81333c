"""The sans-IO buffer against a model of what it must do, plain values in and out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.engine.buffer import COALESCE, FLUSH, SMALL, ByteBuffer, Put, nbytes, to_bytes

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 6000)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("take"), st.integers(1, 5000)),
        st.tuples(st.just("release"), st.just(0)),
        st.tuples(st.just("past"), st.integers(0, 5000)),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(
    ops=OPS,
    limit=st.integers(1, 8192),
    policy=st.sampled_from(["wait", "drop_oldest", "drop_newest", "error"]),
)
def test_the_buffer_keeps_order_framing_and_budget(ops: list[Any], limit: int, policy: Any) -> None:
    buf = ByteBuffer(limit, policy)
    offered: list[bytes] = []  # every chunk put and not refused, in order
    kept: list[bool] = []  # whether it was queued (a drop_oldest may drop it later)
    flushes: set[int] = set()  # stream offsets (of what was put) where a FLUSH stands
    out = bytearray()
    messages: list[bytes] = []
    in_flight: list[int] = []
    past = 0  # bytes sent past the queue (in_flight)
    for op, arg in ops:
        if op == "put":
            chunk = bytes([len(offered) % 251 + 1]) * arg
            before = buf.buffered
            outcome = buf.put(chunk)
            if outcome is not Put.REFUSED:
                offered.append(chunk)
                kept.append(outcome is Put.QUEUED)
            if policy == "wait":
                assert outcome is Put.QUEUED
            elif outcome is Put.QUEUED and before and arg:
                assert buf.buffered <= limit
            if outcome is Put.REFUSED:
                assert policy == "error" and buf.buffered == before
                assert before + arg > limit
        elif op == "past":
            buf.in_flight(arg)
            in_flight.append(arg)
            past += arg
        elif op == "flush":
            buf.mark()
            flushes.add(sum(len(c) for c, k in zip(offered, kept, strict=True) if k))
        elif op == "take":
            got = buf.take(arg)
            if got is None:
                assert buf.queued == 0
                continue
            data = bytes(got)
            assert 0 < len(data) <= arg
            out += data
            messages.append(data)
            in_flight.append(nbytes(got))
        else:
            for n in in_flight:
                buf.release(n)
            in_flight.clear()
        assert buf.buffered == buf.queued + sum(in_flight)
        assert buf.taken == sum(in_flight)
        # Everything queued on arrival, whatever became of it since.
        assert buf.bytes_in == past + sum(len(c) for c, k in zip(offered, kept, strict=True) if k)
    # Drain what is left.
    while (got := buf.take(1 << 20)) is not None:
        out += bytes(got)
        messages.append(bytes(got))
        buf.release(nbytes(got))
    for n in in_flight:
        buf.release(n)
    assert buf.buffered == 0 and buf.taken == 0
    # Whole chunks, in order: what came out is the offered chunks minus whole drops.
    if policy == "wait":
        assert bytes(out) == b"".join(offered)
    else:
        assert _is_whole_chunk_subsequence(bytes(out), offered)
    assert past + sum(map(len, offered)) == buf.bytes_out + buf.dropped_bytes
    assert buf.bytes_out == len(out) + past
    if policy == "wait":
        # No message spans a FLUSH.
        offset = 0
        for message in messages:
            assert not any(offset < f < offset + len(message) for f in flushes)
            offset += len(message)


def _is_whole_chunk_subsequence(out: bytes, offered: list[bytes]) -> bool:
    """``out`` is the concatenation of some of ``offered``, in order, each whole."""
    i = 0
    for chunk in offered:
        if chunk and out.startswith(chunk, i):
            i += len(chunk)
    return i == len(out)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("row"), st.integers(0, SMALL - 1)),
            st.tuples(st.just("big"), st.integers(SMALL, 3 * SMALL)),
            st.tuples(st.just("take"), st.integers(1, 3 * COALESCE)),
            st.tuples(st.just("release"), st.just(0)),
            st.tuples(st.just("past"), st.integers(1, 2 * COALESCE)),
        ),
        max_size=300,
    )
)
def test_rows_join_the_tail_until_it_holds_the_coalescing_size(ops: list[Any]) -> None:
    # White-box: the queue's last item is the tail. A row joins it while it is
    # under COALESCE and nothing was taken or queued after it since; sends past
    # the queue and releases (which move the budget, not the tail) change nothing.
    buf = ByteBuffer(1 << 30)
    tail: int | None = None  # the model: the open tail's length
    in_flight: list[int] = []
    for op, arg in ops:
        if op == "row":
            buf.append(b"r" * arg, arg)
            if arg:
                tail = tail + arg if tail is not None and tail < COALESCE else arg
                last = buf._queue[-1]
                assert isinstance(last, bytearray) and len(last) == tail
        elif op == "big":
            buf.append(b"b" * arg, arg)
            tail = None
        elif op == "take":
            got = buf.take(arg)
            tail = None
            if got is not None:
                in_flight.append(nbytes(got))
        elif op == "release":
            for n in in_flight:
                buf.release(n)
            in_flight.clear()
        else:
            buf.in_flight(arg)
            in_flight.append(arg)


def test_small_chunks_share_one_bytearray_up_to_the_coalescing_size() -> None:
    buf = ByteBuffer(1 << 20)
    for _ in range(COALESCE // 100 + 10):
        buf.append(b"r" * 100, 100)
    first = buf.take(1 << 20)
    assert isinstance(first, bytes)  # the runs were joined into one message
    assert len(first) == (COALESCE // 100 + 10) * 100
    buf.append(b"x" * SMALL, SMALL)
    assert isinstance(buf.take(1 << 20), bytes)  # big enough to be queued by reference


def test_a_large_chunk_leaves_as_zero_copy_slices() -> None:
    big = b"y" * 10_000
    buf = ByteBuffer(100)
    buf.append(big, len(big))
    part = buf.take(4096)
    assert isinstance(part, memoryview) and part.obj is big
    assert buf.queued == 10_000 - 4096 and buf.buffered == 10_000


def test_bytes_sent_past_the_queue_are_counted() -> None:
    buf = ByteBuffer(10)
    buf.passed(64)
    buf.in_flight(32)
    assert (buf.bytes_in, buf.bytes_out, buf.buffered, buf.queued) == (96, 96, 32, 0)
    buf.release(32)
    assert buf.buffered == 0


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ("é", b"\xc3\xa9"),
        (bytearray(b"ab"), bytearray(b"ab")),
        (memoryview(b"ab"), b"ab"),
    ],
)
def test_chunks_are_normalised_to_bytes(chunk: Any, expected: bytes) -> None:
    assert bytes(to_bytes(chunk, "utf-8")) == expected  # type: ignore[arg-type]


def test_a_multibyte_memoryview_is_cast_to_bytes() -> None:
    view = memoryview(bytearray(8)).cast("i")
    got = to_bytes(view, "utf-8")
    assert isinstance(got, memoryview) and got.format == "B" and nbytes(got) == 8
    assert to_bytes(FLUSH, "utf-8") is FLUSH
    with pytest.raises(TypeError, match="int"):
        to_bytes(3, "utf-8")


def test_a_chunk_sent_in_slices_is_held_whole_until_its_last_slice_is_released() -> None:
    buf = ByteBuffer(100)
    buf.append(b"z" * 10_000, 10_000)
    sent = 0
    while (part := buf.take(4096)) is not None:
        assert buf.held == 10_000  # queued rest + slice in flight + slices gone: all alive
        buf.release(nbytes(part))
        sent += nbytes(part)
        assert buf.buffered == 10_000 - sent
    assert buf.held == buf.buffered == 0
