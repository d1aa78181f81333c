"""Framing (sans-IO): what encode() writes, a WHATWG reader reads back unchanged."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sse_support import SSEReader, parse

from sluicegate.events.errors import BadLastEventId, EventError
from sluicegate.events.framing import Event, comment, encode, encode_body, retry_hint, with_id
from sluicegate.events.ids import format_id, parse_id

# Field values a reader can carry: no line breaks (and no NUL in ids).
field_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)))
event_ids = field_text.filter(lambda s: "\0" not in s)
any_text = st.text(st.characters(blacklist_categories=("Cs",)))


def normalised(text: str) -> str:
    """What a reader gets for data with line breaks: each of CRLF, CR, LF becomes LF."""
    return re.sub(r"\r\n|\r", "\n", text)


@given(data=any_text, event=st.none() | field_text.filter(bool), event_id=event_ids)
def test_any_text_round_trips_through_a_spec_reader(
    data: str, event: str | None, event_id: str
) -> None:
    wire = encode(Event(data, event=event, id=event_id)).decode("utf-8")
    [parsed] = parse(wire)
    assert parsed.data == normalised(data)
    assert parsed.event == (event or "message")
    assert parsed.last_event_id == event_id


@given(st.lists(st.tuples(any_text, st.integers(0, 2**31)), min_size=1, max_size=5), st.data())
def test_a_stream_of_events_fed_in_arbitrary_pieces_parses_to_the_same_events(
    events: list[tuple[str, int]], cut: st.DataObject
) -> None:
    wire = b"".join(
        encode(Event(d, id=format_id((1, n)))) + comment("beat") for d, n in events
    ).decode()
    points = sorted(cut.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reader = SSEReader()
    got = []
    for a, b in zip([0, *points], [*points, len(wire)], strict=True):
        got += reader.feed(wire[a:b])
    assert [(p.data, p.last_event_id) for p in got] == [
        (normalised(d), f"1-{n}") for d, n in events
    ]
    assert reader.comments == len(events)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | any_text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(any_text, c, max_size=3),
        max_leaves=8,
    ).filter(lambda v: not isinstance(v, str))  # a str is sent as text, not as JSON
)
def test_json_data_round_trips(value: object) -> None:
    [parsed] = parse(encode(Event(value)).decode())
    assert json.loads(parsed.data) == value


def test_bytes_data_must_be_utf8() -> None:
    assert parse(encode(Event("é\n".encode())).decode())[0].data == "é\n"
    with pytest.raises(EventError, match="UTF-8"):
        encode(Event(b"\xff"))


def test_empty_data_still_dispatches() -> None:
    # A browser drops an event with no data line: there is always one.
    assert encode(Event("")) == b"data: \n\n"
    assert parse("data: \n\n")[0].data == ""


def test_leading_space_in_data_is_kept() -> None:
    assert parse(encode(Event("  two spaces")).decode())[0].data == "  two spaces"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "a\nb"}, "line break"),
        ({"id": "a\rb"}, "line break"),
        ({"id": "a\0b"}, "NUL"),
        ({"event": "x\ny"}, "line break"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
        ({"data": object()}, "JSON"),
    ],
)
def test_fields_that_would_break_the_framing_are_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(EventError, match=message):
        encode(Event(**kwargs))  # type: ignore[arg-type]


def test_retry_and_comments() -> None:
    reader = SSEReader()
    assert reader.feed((retry_hint(2500) + comment("a\nb")).decode()) == []
    assert reader.retry == 2500
    assert reader.comments == 2
    assert encode(Event("x", retry=10)) == b"retry: 10\ndata: x\n\n"


def test_with_id_puts_the_id_in_front_of_a_shared_body() -> None:
    body = encode_body({"n": 1}, event="tick")
    assert with_id("5-1", body) == encode(Event({"n": 1}, event="tick", id="5-1"))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_ids_round_trip_and_order_as_pairs(a: int, b: int) -> None:
    assert parse_id(format_id((a, b))) == (a, b)


@pytest.mark.parametrize(
    "text", ["", "12", "a-1", "1-b", "1-2-3", "-1-2", "1 -2", "1" * 21 + "-1", "0x1-2"]
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(BadLastEventId):
        parse_id(text)
