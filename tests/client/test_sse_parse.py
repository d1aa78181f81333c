"""The SSE load client's sans-IO parts: head, chunked framing, event parsing, counting."""

from __future__ import annotations

import asyncio
import doctest
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.client import sse_tally
from sluicegate.client.sse_parse import (
    ChunkedDecoder,
    EventParser,
    WireError,
    parse_head,
)
from sluicegate.client.sse_tally import Sequence, Tally, merged, read_stamp, stamped
from sluicegate.events.stamp import on_schedule


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def test_head_parsing_and_refusals() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nContent-Length: 12")
    assert head.status == 200 and not head.chunked and head.content_length == 12
    for bad in (b"HTTP/2 200", b"HTTP/1.1 2x0 OK", b"HTTP/1.1 200 OK\r\nno colon", b"junk"):
        with pytest.raises(WireError):
            parse_head(bad)


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_chunked_decoder_any_split(chunks: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    wire += b"0\r\nTrailer: x\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(b"".join(decoder.feed(piece)) for piece in _split(wire, cuts))
    assert out == b"".join(chunks)
    assert decoder.done


@pytest.mark.parametrize("wire", [b"zz\r\n", b"5\r\nHelloXX", b"-1\r\n", b"5" * (2 * 1024 * 1024)])
def test_chunked_decoder_refuses_bad_framing(wire: bytes) -> None:
    with pytest.raises(WireError):
        ChunkedDecoder().feed(wire)


_TEXT = st.text(st.characters(blacklist_characters="\r\n\x00", codec="utf-8"), max_size=20)


@given(
    events=st.lists(
        st.tuples(st.lists(_TEXT, min_size=1, max_size=3), st.none() | _TEXT), max_size=6
    ),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_event_parser_any_line_ending_any_split(
    events: list[tuple[list[str], str | None]], ending: str, cuts: list[int]
) -> None:
    text = ": hello\n".replace("\n", ending)
    for lines, eid in events:
        if eid is not None:
            text += f"id: {eid}{ending}"
        text += "".join(f"data: {line}{ending}" for line in lines) + ending
    parser = EventParser()
    got = [m for piece in _split(text.encode(), cuts) for m in parser.feed(piece)]
    want_ids: list[str | None] = []
    current: str | None = None
    for _, eid in events:
        current = eid if eid is not None else current
        want_ids.append(current)
    assert [m.data for m in got] == ["\n".join(lines).encode() for lines, _ in events]
    assert [m.id for m in got] == want_ids
    assert parser.comments == 1


def test_event_parser_fields() -> None:
    parser = EventParser()
    wire = (
        b"\xef\xbb\xbfretry: 150\nretry: soon\nid: a\x00b\nevent: x\ndata\ndata:  two\n"
        b"unknown: 1\n\nid: 9\n\n"  # an event without data is not dispatched, its id sticks
        b"data: z\n\n"
    )
    got = [m for b in (wire[:1], wire[1:2], wire[2:]) for m in parser.feed(b)]
    want = [("x", b"\n two", None), ("message", b"z", "9")]
    assert [(m.event, m.data, m.id) for m in got] == want
    assert parser.retry == 150 and parser.last_id == "9"


def test_event_parser_refuses_endless_line() -> None:
    with pytest.raises(WireError):
        EventParser().feed(b"data: " + b"x" * (2 * 1024 * 1024))


def test_read_stamp() -> None:
    assert read_stamp(b'{"n":3,"published":1.25,"pad":"xx"}') == (3, 1.25)
    # Another writer's spacing, or a number too long for the quick match: decoded whole.
    assert read_stamp(b'{"n": 3, "published": 1.25}') == (3, 1.25)
    assert read_stamp(b'{"n":3,"published":1e3,"pad":""}') == (3, 1000.0)
    assert read_stamp(b'{"n":%d,"published":2,"pad":""}' % 10**30) == (10**30, 2.0)
    for bad in (b"", b"plain", b'{"n": "3", "published": 1}', b'{"n": 3}', b"{broken"):
        assert read_stamp(bad) is None


@given(st.integers(0, 10**12), st.integers(0, 300))
def test_read_stamp_reads_what_stamped_wrote(n: int, size: int) -> None:
    data = stamped(n, size).encode()
    assert json.loads(data)["n"] == n
    got = read_stamp(data)
    assert got is not None and got[0] == n
    assert got[1] == json.loads(data)["published"]


@given(chunks=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8))
def test_chunked_decoder_whole_chunks_in_one_read(chunks: list[bytes]) -> None:
    # The quick path: whole chunks without extensions, as servers write them, then
    # the rest of the wire (the last chunk and its trailer) in a second read.
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    decoder = ChunkedDecoder()
    assert decoder.feed(wire) == chunks
    assert decoder.feed(b"0\r\n\r\n") == [] and decoder.done


@given(st.lists(st.integers(0, 40), max_size=60))
def test_sequence_against_a_model(numbers: list[int]) -> None:
    seq = Sequence()
    top: int | None = None
    unique = lost = dup = 0
    for n in numbers:
        seq.see(n)
        if top is not None and n <= top:
            dup += 1
            continue
        if top is not None:
            lost += n - top - 1
        unique += 1
        top = n
    assert (seq.unique, seq.lost, seq.duplicated) == (unique, lost, dup)


def test_tally_merge_and_dict() -> None:
    a, b = Tally("fast", 2), Tally("slow", 1)
    a.latencies.extend([0.001, 0.002, 0.003])
    b.latencies.append(0.5)
    seq = Sequence()
    for n in (1, 2, 4, 4):
        seq.see(n)
    a.add(seq)
    for i in range(7):
        b.error(f"e{i % 6}")
    total = merged([a, b])
    assert (total.subscribers, total.events, total.lost, total.duplicated) == (3, 3, 1, 1)
    assert total.latency(50) == 0.002 and total.to_dict()["latency_max"] == 0.5
    assert len(b.errors) == 5  # at most five distinct messages are kept


def test_a_tally_survives_its_dict_and_merges_across_processes() -> None:
    a = Tally("fast", 2, connected=2, reconnects=1, events=9, lost=1, bytes=900)
    a.latencies.extend([0.1, 0.3])
    a.error("reset")
    back = Tally.from_dict(json.loads(json.dumps(a.to_dict())), a.latencies)
    assert back == a
    assert merged([back, back]).to_dict() == merged([a, a]).to_dict()


def test_the_tally_examples_hold() -> None:
    assert doctest.testmod(sse_tally).failed == 0


async def test_on_schedule_keeps_absolute_times_and_says_how_late() -> None:
    started = time.monotonic()
    seen: list[tuple[int, float]] = []
    async for k, late in on_schedule(50.0, 5):
        seen.append((k, late))
        if k == 1:
            await asyncio.sleep(0.1)  # the publisher's own work overruns two ticks
    assert [k for k, _ in seen] == [0, 1, 2, 3, 4]
    assert time.monotonic() - started >= 0.1
    # Ticks 2, 3 and 4 were due at 40, 60 and 80 ms: they come at once after the
    # overrun (about 120 ms in), each saying how late it is; a schedule that counted
    # from the previous tick would have called them on time.
    assert seen[2][1] > 0.03 and seen[3][1] > 0.01 and seen[4][1] > 0.0
