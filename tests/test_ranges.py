"""Tests for sluicegate.http.ranges: RFC 9110 Range and conditional requests, sans-IO."""

from __future__ import annotations

import doctest
import email.parser
import email.policy
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.errors import ConfigError
from sluicegate.http import ranges
from sluicegate.http.ranges import (
    MAX_RANGE_FIELD_LENGTH,
    Decision,
    Reason,
    Representation,
    etag_for,
    evaluate,
    format_http_date,
    iter_body,
    multipart_parts,
    parse_http_date,
    parse_range,
)

LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
DATA = bytes(range(256)) * 40  # 10240 bytes, every position distinguishable mod 256
REP = Representation(length=10_000, etag='"v1"', last_modified=LM + 0.75, content_type="text/x")


def get(headers: dict[str, str], rep: Representation = REP, **kw: object) -> Decision:
    return evaluate("GET", headers, rep, boundary="B0UND", **kw)  # type: ignore[arg-type]


def body(decision: Decision, rep: Representation = REP) -> bytes:
    return b"".join(iter_body(decision, rep, DATA[: rep.length]))


def split_multipart(payload: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """A strict reader of our multipart framing: (headers, data) per part."""
    delim = b"--" + boundary.encode()
    assert payload.startswith(delim + b"\r\n")
    assert payload.endswith(b"\r\n" + delim + b"--\r\n")
    inner = payload[len(delim) + 2 : -(len(delim) + 6)]
    parts = []
    for chunk in inner.split(b"\r\n" + delim + b"\r\n"):
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((fields, data))
    return parts


# -- parse_range -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-499", [(0, 499)]),
        ("bytes=-500", [(None, 500)]),
        ("bytes=9500-", [(9500, None)]),
        ("bytes=0-0,-1", [(0, 0), (None, 1)]),
        ("BYTES=1-2", [(1, 2)]),  # range units are case-insensitive
        ("bytes=1-2 , 4-5,,\t6-", [(1, 2), (4, 5), (6, None)]),  # OWS, empty elements
        ("bytes=007-0008", [(7, 8)]),
        ("bytes=-0", [(None, 0)]),  # valid syntax, unsatisfiable
        ("bytes=" + "9" * 40 + "-", [(2**63 - 1, None)]),  # saturates, same outcome
        ("bytes=0-" + "9" * 5000, [(0, 2**63 - 1)]),  # no int() of 5000 digits
    ],
)
def test_parse_range_accepts(value: str, expected: list[tuple[int | None, int | None]]) -> None:
    assert parse_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "items=0-5",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=5-2",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=-",
        "bytes=+1-2",
        "bytes=1 -2",
        "bytes=0x10-",
        "bytes=1-2,x",
        "=0-1",
        "by tes=0-1",
        "bytes=--1",
        "bytes=٣-٤",  # non-ASCII digits are not DIGIT
    ],
)
def test_parse_range_rejects(value: str) -> None:
    assert parse_range(value) is None


# -- single, suffix, open, multiple ------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [
        ("bytes=0-499", 0, 500),
        ("bytes=500-999", 500, 1000),
        ("bytes=-500", 9500, 10_000),
        ("bytes=9500-", 9500, 10_000),
        ("bytes=0-0", 0, 1),
        ("bytes=-1", 9999, 10_000),
        ("bytes=9999-", 9999, 10_000),
        ("bytes=0-", 0, 10_000),
        ("bytes=-20000", 0, 10_000),  # suffix longer than the representation: all of it
        ("bytes=9000-99999", 9000, 10_000),  # last-pos past the end is clamped
    ],
)
def test_single_range(spec: str, start: int, stop: int) -> None:
    d = get({"Range": spec})
    assert (d.status, d.reason, d.ranges) == (206, Reason.SINGLE_RANGE, ((start, stop),))
    assert d.boundary is None and not d.is_multipart
    assert d.header("content-range") == f"bytes {start}-{stop - 1}/10000"
    assert d.header("Content-Length") == str(stop - start)
    assert d.header("Content-Type") == "text/x"
    assert d.header("Accept-Ranges") == "bytes"
    assert d.header("ETag") == '"v1"'
    assert d.header("Last-Modified") == LM_TEXT
    assert body(d) == DATA[start:stop]


def test_multiple_ranges_are_multipart_with_exact_length() -> None:
    d = get({"Range": "bytes=0-9, 100-199, -5"})
    assert (d.status, d.reason) == (206, Reason.MULTIPLE_RANGES)
    assert d.ranges == ((0, 10), (100, 200), (9995, 10_000))
    assert d.boundary == "B0UND"
    assert d.header("Content-Type") == "multipart/byteranges; boundary=B0UND"
    assert d.header("Content-Range") is None
    payload = body(d)
    assert d.header("Content-Length") == str(len(payload))
    parts = split_multipart(payload, "B0UND")
    assert [p[0]["Content-Range"] for p in parts] == [
        "bytes 0-9/10000",
        "bytes 100-199/10000",
        "bytes 9995-9999/10000",
    ]
    assert all(p[0]["Content-Type"] == "text/x" for p in parts)
    assert [p[1] for p in parts] == [DATA[0:10], DATA[100:200], DATA[9995:10_000]]


def test_multipart_framing_parses_with_the_stdlib_mime_parser() -> None:
    d = get({"Range": "bytes=0-3,10-13"})
    head = f"Content-Type: {d.header('Content-Type')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body(d))
    assert message.is_multipart()
    got = [(part["Content-Range"], part.get_payload(decode=True)) for part in message.iter_parts()]
    assert got == [("bytes 0-3/10000", DATA[0:4]), ("bytes 10-13/10000", DATA[10:14])]


def test_multipart_parts_matches_decision_and_lets_a_caller_stream_slices() -> None:
    d = get({"Range": "bytes=0-1,5-6"})
    framing = multipart_parts(d, REP)
    assert framing.boundary == "B0UND"
    assert framing.content_type == d.header("Content-Type")
    assert [(p.start, p.stop) for p in framing.parts] == list(d.ranges)
    streamed = b"".join(p.header + DATA[p.start : p.stop] for p in framing.parts)
    streamed += framing.closing
    assert len(streamed) == framing.content_length == int(d.header("Content-Length") or -1)
    assert framing.parts[0].header.startswith(b"--B0UND\r\n")
    assert framing.parts[1].header.startswith(b"\r\n--B0UND\r\n")
    assert framing.closing == b"\r\n--B0UND--\r\n"


def test_multipart_parts_refuses_a_single_part_decision() -> None:
    with pytest.raises(ConfigError):
        multipart_parts(get({"Range": "bytes=0-1"}), REP)


def test_random_boundary_when_none_given() -> None:
    a = evaluate("GET", {"Range": "bytes=0-1,5-6"}, REP)
    b = evaluate("GET", {"Range": "bytes=0-1,5-6"}, REP)
    assert a.boundary and b.boundary and a.boundary != b.boundary
    assert re.fullmatch(r"[0-9a-f]{32}", a.boundary)


@pytest.mark.parametrize("boundary", ["", "x" * 71, "a b", "a;b", 'a"b', "é"])
def test_invalid_boundary_is_a_config_error(boundary: str) -> None:
    with pytest.raises(ConfigError):
        evaluate("GET", {}, REP, boundary=boundary)


# -- coalescing and order ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bytes=0-99,50-149", ((0, 150),)),  # overlapping: one part, no multipart
        ("bytes=0-99,100-199", ((0, 200),)),  # adjacent
        ("bytes=100-199,0-99", ((0, 200),)),  # adjacent, out of order
        ("bytes=0-9,0-9", ((0, 10),)),  # duplicates
        ("bytes=0-9,20-29,10-19", ((0, 30),)),  # a gap closed by a later spec
        ("bytes=50-59,0-9", ((50, 60), (0, 10))),  # request order kept (§14.6 SHOULD)
        ("bytes=50-59,0-9,55-69", ((50, 70), (0, 10))),  # merged part sits at its first member
        ("bytes=0-9,99999999-", ((0, 10),)),  # unsatisfiable member dropped
        ("bytes=-0,0-9", ((0, 10),)),
    ],
)
def test_coalescing(spec: str, expected: tuple[tuple[int, int], ...]) -> None:
    d = get({"Range": spec})
    assert (d.status, d.ranges) == (206, expected)
    assert d.is_multipart == (len(expected) > 1)
    assert d.reason == (Reason.MULTIPLE_RANGES if len(expected) > 1 else Reason.SINGLE_RANGE)


# -- zero length, unknown unit, invalid syntax, unsatisfiable ---------------------------


@pytest.mark.parametrize("spec", ["bytes=0-", "bytes=0-0", "bytes=-5", "bytes=5-", "bytes=-0"])
def test_zero_length_representation_ignores_range(spec: str) -> None:
    empty = Representation(length=0, etag='"e"')
    d = get({"Range": spec}, empty)
    assert (d.status, d.reason, d.ranges) == (200, Reason.EMPTY_REPRESENTATION, ())
    assert d.header("Content-Length") == "0"
    assert body(d, empty) == b""


def test_zero_length_without_range() -> None:
    d = get({}, Representation(length=0))
    assert (d.status, d.ranges, d.header("Content-Length")) == (200, (), "0")


@pytest.mark.parametrize("spec", ["items=0-5", "lines=x", "pages=1-2,3-4", "Bits=0-7"])
def test_unknown_unit_is_ignored(spec: str) -> None:
    d = get({"Range": spec})
    assert (d.status, d.reason, d.ranges) == (200, Reason.UNKNOWN_UNIT, ((0, 10_000),))


@pytest.mark.parametrize(
    "spec", ["bytes=5-2", "bytes=", "bytes=abc", "bytes=1-2,x", "bytes 0-5", "bytes=0--5"]
)
def test_invalid_syntax_is_ignored_with_200(spec: str) -> None:
    """The documented choice: invalid Range syntax gets 200 with the whole body, not 416."""
    d = get({"Range": spec})
    assert (d.status, d.reason, d.ranges) == (200, Reason.INVALID_RANGE, ((0, 10_000),))
    assert d.header("Content-Length") == "10000"
    assert d.header("Content-Range") is None


@pytest.mark.parametrize(
    "spec", ["bytes=10000-", "bytes=99999999-", "bytes=-0", "bytes=10000-10005,20000-"]
)
def test_unsatisfiable_is_416_with_star_content_range(spec: str) -> None:
    d = get({"Range": spec})
    assert (d.status, d.reason, d.ranges) == (416, Reason.UNSATISFIABLE, ())
    assert d.header("Content-Range") == "bytes */10000"
    assert d.header("Content-Length") is None  # the caller's error body decides it
    assert body(d) == b""


# -- If-Range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "status", "reason"),
    [
        ('"v1"', 206, Reason.SINGLE_RANGE),
        ('"v0"', 200, Reason.IF_RANGE_MISMATCH),  # stale ETag: aiohttp resumes corruptly
        ('W/"v1"', 200, Reason.IF_RANGE_MISMATCH),  # a weak tag never validates a range
        (LM_TEXT, 206, Reason.SINGLE_RANGE),  # equals Last-Modified (fraction dropped)
        ("Sunday, 06-Nov-94 08:49:37 GMT", 206, Reason.SINGLE_RANGE),
        ("Sun Nov  6 08:49:37 1994", 206, Reason.SINGLE_RANGE),
        ("Sun, 06 Nov 1994 08:49:38 GMT", 200, Reason.IF_RANGE_MISMATCH),  # later: not equal
        ("Sun, 06 Nov 1994 08:49:36 GMT", 200, Reason.IF_RANGE_MISMATCH),  # earlier
        ("yesterday", 200, Reason.IF_RANGE_MISMATCH),
        ('"v1" junk', 200, Reason.IF_RANGE_MISMATCH),
        ("", 200, Reason.IF_RANGE_MISMATCH),
    ],
)
def test_if_range(if_range: str, status: int, reason: Reason) -> None:
    d = get({"Range": "bytes=10-19", "If-Range": if_range})
    assert (d.status, d.reason) == (status, reason)
    assert d.ranges == (((10, 20),) if status == 206 else ((0, 10_000),))


def test_if_range_needs_a_validator_to_compare_with() -> None:
    bare = Representation(length=100)
    assert get({"Range": "bytes=0-1", "If-Range": '"x"'}, bare).status == 200
    assert get({"Range": "bytes=0-1", "If-Range": LM_TEXT}, bare).status == 200


def test_if_range_never_matches_a_weak_current_etag() -> None:
    weak = Representation(length=100, etag='W/"v1"')
    assert get({"Range": "bytes=0-1", "If-Range": '"v1"'}, weak).status == 200


def test_if_range_without_range_is_ignored() -> None:
    d = get({"If-Range": '"v0"'})
    assert (d.status, d.reason) == (200, Reason.NO_RANGE)


# -- preconditions (RFC 9110 §13.2.2) --------------------------------------------------

AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"


@pytest.mark.parametrize(
    ("method", "headers", "status", "reason"),
    [
        ("GET", {"If-Match": '"v1"'}, 200, Reason.NO_RANGE),
        ("GET", {"If-Match": '"v0", "v1"'}, 200, Reason.NO_RANGE),
        ("GET", {"If-Match": "*"}, 200, Reason.NO_RANGE),
        ("GET", {"If-Match": '"v0"'}, 412, Reason.IF_MATCH_FAILED),
        ("GET", {"If-Match": 'W/"v1"'}, 412, Reason.IF_MATCH_FAILED),  # strong comparison
        ("PUT", {"If-Match": '"v0"'}, 412, Reason.IF_MATCH_FAILED),
        ("GET", {"If-Unmodified-Since": LM_TEXT}, 200, Reason.NO_RANGE),
        ("GET", {"If-Unmodified-Since": AFTER}, 200, Reason.NO_RANGE),
        ("GET", {"If-Unmodified-Since": BEFORE}, 412, Reason.IF_UNMODIFIED_SINCE_FAILED),
        ("GET", {"If-Unmodified-Since": "garbage"}, 200, Reason.NO_RANGE),  # invalid: ignored
        # If-Match present: If-Unmodified-Since is not evaluated.
        ("GET", {"If-Match": '"v1"', "If-Unmodified-Since": BEFORE}, 200, Reason.NO_RANGE),
        ("GET", {"If-None-Match": '"v1"'}, 304, Reason.IF_NONE_MATCH_MATCHED),
        ("HEAD", {"If-None-Match": '"v1"'}, 304, Reason.IF_NONE_MATCH_MATCHED),
        ("GET", {"If-None-Match": 'W/"v1"'}, 304, Reason.IF_NONE_MATCH_MATCHED),  # weak cmp
        ("GET", {"If-None-Match": '"a", W/"v1"'}, 304, Reason.IF_NONE_MATCH_MATCHED),
        ("GET", {"If-None-Match": "*"}, 304, Reason.IF_NONE_MATCH_MATCHED),
        ("GET", {"If-None-Match": '"v0"'}, 200, Reason.NO_RANGE),
        ("POST", {"If-None-Match": '"v1"'}, 412, Reason.IF_NONE_MATCH_MATCHED),
        ("PUT", {"If-None-Match": "*"}, 412, Reason.IF_NONE_MATCH_MATCHED),
        ("PUT", {"If-None-Match": '"v0"'}, 200, Reason.PRECONDITIONS_PASSED),
        ("GET", {"If-Modified-Since": LM_TEXT}, 304, Reason.NOT_MODIFIED_SINCE),
        ("GET", {"If-Modified-Since": AFTER}, 304, Reason.NOT_MODIFIED_SINCE),
        ("GET", {"If-Modified-Since": BEFORE}, 200, Reason.NO_RANGE),
        ("GET", {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 +0000"}, 200, Reason.NO_RANGE),
        ("POST", {"If-Modified-Since": AFTER}, 200, Reason.PRECONDITIONS_PASSED),
        # If-None-Match present: If-Modified-Since is not evaluated.
        ("GET", {"If-None-Match": '"v0"', "If-Modified-Since": AFTER}, 200, Reason.NO_RANGE),
        # Order: If-Match fails first even when If-None-Match would give 304.
        ("GET", {"If-Match": '"v0"', "If-None-Match": '"v1"'}, 412, Reason.IF_MATCH_FAILED),
        # A 304 wins over Range.
        ("GET", {"If-None-Match": '"v1"', "Range": "bytes=0-1"}, 304, Reason.IF_NONE_MATCH_MATCHED),
        ("GET", {"If-Match": '"v1"', "Range": "bytes=0-1"}, 206, Reason.SINGLE_RANGE),
        ("GET", {"If-Match": '"v0"', "Range": "bytes=0-1"}, 412, Reason.IF_MATCH_FAILED),
    ],
)
def test_preconditions(method: str, headers: dict[str, str], status: int, reason: Reason) -> None:
    d = evaluate(method, headers, REP)
    assert (d.status, d.reason) == (status, reason)
    if status in (304, 412, 416):
        assert d.ranges == ()
        assert d.header("Content-Length") is None


def test_304_carries_etag_and_last_modified_only_without_etag() -> None:
    d = get({"If-None-Match": '"v1"'})
    assert d.headers == (("ETag", '"v1"'),)
    no_tag = Representation(length=5, last_modified=LM)
    d = get({"If-Modified-Since": LM_TEXT}, no_tag)
    assert d.headers == (("Last-Modified", LM_TEXT),)


def test_date_preconditions_ignored_without_last_modified() -> None:
    bare = Representation(length=5)
    assert get({"If-Modified-Since": AFTER}, bare).status == 200
    assert get({"If-Unmodified-Since": BEFORE}, bare).status == 200


def test_etag_matching_needs_a_current_etag() -> None:
    bare = Representation(length=5)
    assert get({"If-None-Match": '"x"'}, bare).status == 200
    assert get({"If-Match": '"x"'}, bare).status == 412
    assert get({"If-Match": "*"}, bare).status == 200  # the representation exists


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        ('"a,b", "v1"', True),  # commas inside a quoted tag do not split it
        ('"v1 ", "z"', False),
        ("v1", False),  # unquoted: not an entity-tag
        ('w/"v1"', False),  # the weak prefix is case-sensitive
        ('garbage, "v1"', True),  # unreadable members are skipped
        ('"x" junk, "v1"', True),
        ('*, "z"', False),  # "*" is only valid alone
        (" , ,", False),
    ],
)
def test_entity_tag_list_parsing(value: str, matches: bool) -> None:
    d = get({"If-None-Match": value})
    assert (d.status == 304) is matches


# -- methods -------------------------------------------------------------------------


def test_head_gets_the_headers_of_a_get_without_range() -> None:
    plain_get = get({})
    for headers in ({}, {"Range": "bytes=0-9"}, {"Range": "bytes=0-1,5-6"}):
        d = evaluate("HEAD", headers, REP)
        assert d.status == 200
        assert d.headers == plain_get.headers
        assert d.ranges == plain_get.ranges
    assert evaluate("HEAD", {"Range": "bytes=0-9"}, REP).reason == Reason.NOT_GET


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get", "PATCH"])
def test_range_is_ignored_for_methods_other_than_get(method: str) -> None:
    d = evaluate(method, {"Range": "bytes=0-9"}, REP)
    assert (d.status, d.ranges, d.headers) == (200, (), ())
    assert d.reason == Reason.PRECONDITIONS_PASSED


# -- header inputs -----------------------------------------------------------------


def test_header_forms_mapping_pairs_and_asgi_bytes() -> None:
    expected = ((100, 200),)
    assert get({"RANGE": "bytes=100-199"}).ranges == expected
    assert get([("range", "bytes=100-199")]).ranges == expected  # type: ignore[arg-type]
    asgi = [(b"host", b"x"), (b"range", b"bytes=100-199")]
    assert evaluate("GET", asgi, REP).ranges == expected
    assert evaluate("GET", [(b"range", b" bytes=100-199 ")], REP).ranges == expected


def test_repeated_fields() -> None:
    twice_same = [("Range", "bytes=0-9"), ("range", "bytes=0-9")]
    assert evaluate("GET", twice_same, REP).ranges == ((0, 10),)
    twice_different = [("Range", "bytes=0-9"), ("Range", "bytes=20-29")]
    d = evaluate("GET", twice_different, REP)
    assert (d.status, d.reason) == (200, Reason.INVALID_RANGE)
    # List fields combine, so a match in either line counts.
    inm = [("If-None-Match", '"a"'), ("If-None-Match", '"v1"')]
    assert evaluate("GET", inm, REP).status == 304
    # A repeated If-Range with different values cannot hold.
    if_range = [("Range", "bytes=0-9"), ("If-Range", '"v1"'), ("If-Range", '"v2"')]
    assert evaluate("GET", if_range, REP).reason == Reason.IF_RANGE_MISMATCH
    # A date field sent twice with different values is ignored.
    ims = [("If-Modified-Since", AFTER), ("If-Modified-Since", BEFORE)]
    assert evaluate("GET", ims, REP).status == 200


# -- defences ----------------------------------------------------------------------


def test_more_than_max_ranges_gets_200() -> None:
    sixteen = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 4}" for i in range(16))
    d = get({"Range": sixteen})
    assert (d.status, len(d.ranges)) == (206, 16)
    seventeen = sixteen + ",500-504"
    d = get({"Range": seventeen})
    assert (d.status, d.reason, d.ranges) == (200, Reason.TOO_MANY_RANGES, ((0, 10_000),))
    assert get({"Range": "bytes=0-1,5-6,9-10"}, max_ranges=2).reason == Reason.TOO_MANY_RANGES
    with pytest.raises(ConfigError):
        get({}, max_ranges=0)


def test_apache_killer_header_gets_200() -> None:
    # The CVE-2011-3192 exploit, "bytes=0-,5-0,5-1,...,5-1299", is invalid syntax
    # (5-0 ends before it starts) and longer than the cap: refused either way.
    killer = "bytes=0-," + ",".join(f"5-{i}" for i in range(1300))
    d = get({"Range": killer}, max_ranges=10_000)
    assert (d.status, d.reason, d.ranges) == (200, Reason.RANGE_TOO_LONG, ((0, 10_000),))
    d = get({"Range": killer[:2000].rpartition(",")[0]}, max_ranges=10_000)
    assert (d.status, d.reason) == (200, Reason.INVALID_RANGE)
    # Its valid twin is stopped by the overlap rule, whatever max_ranges allows.
    twin = "bytes=0-," + ",".join(f"5-{i}" for i in range(5, 300))
    d = get({"Range": twin}, max_ranges=10_000)
    assert (d.status, d.reason, d.ranges) == (200, Reason.OVERLAP_ATTACK, ((0, 10_000),))
    # And with the default max_ranges, by the count.
    assert get({"Range": twin}).reason == Reason.TOO_MANY_RANGES


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("bytes=0-,0-", Reason.OVERLAP_ATTACK),  # sum 2x the length
        ("bytes=0-5999,4000-", Reason.OVERLAP_ATTACK),  # sum above the length
        ("bytes=0-99,50-149,120-199", Reason.OVERLAP_ATTACK),  # three ranges overlap
        ("bytes=0-99,50-149,500-599,550-649", Reason.OVERLAP_ATTACK),  # two overlapping pairs
        ("bytes=40-49,30-39,20-29,10-19", Reason.OUT_OF_ORDER),  # three descents
        ("bytes=90-99,70-79,50-59,30-39,10-19", Reason.OUT_OF_ORDER),
    ],
)
def test_abusive_ranges_get_200(spec: str, reason: Reason) -> None:
    d = get({"Range": spec})
    assert (d.status, d.reason, d.ranges) == (200, reason, ((0, 10_000),))


@pytest.mark.parametrize(
    "spec",
    [
        "bytes=0-99,50-149",  # one overlapping pair is fine (coalesced)
        "bytes=60-69,40-49,20-29",  # two descents are fine
        "bytes=-100,0-99",  # tail first, as some readers do
    ],
)
def test_mild_irregularities_are_served(spec: str) -> None:
    assert get({"Range": spec}).status == 206


def test_overlong_range_field_is_not_parsed() -> None:
    value = "bytes=0-0" + ",0-0" * (MAX_RANGE_FIELD_LENGTH // 4)
    d = get({"Range": value}, max_ranges=10**9)
    assert (d.status, d.reason) == (200, Reason.RANGE_TOO_LONG)
    huge = "bytes=" + "1" * 10**6 + "-"
    assert get({"Range": huge}).reason == Reason.RANGE_TOO_LONG


def test_too_many_is_judged_before_syntax_so_garbage_is_not_parsed_twice() -> None:
    d = get({"Range": "bytes=" + ",".join(["x"] * 17)})
    assert d.reason == Reason.TOO_MANY_RANGES


# -- the deviations of other frameworks, pinned --------------------------------------

DEVIATIONS = [
    # (who gets it wrong, what they answer, request headers, our status, our ranges)
    ("starlette", 400, {"Range": "items=0-5"}, 200, ((0, 10_000),)),
    ("starlette", 416, {"Range": "bytes=0-9,99999999-"}, 206, ((0, 10),)),
    ("aiohttp", 206, {"Range": "bytes=5000-", "If-Range": '"stale"'}, 200, ((0, 10_000),)),
    ("aiohttp", 206, {"Range": "bytes=5000-", "If-Range": 'W/"v1"'}, 200, ((0, 10_000),)),
]


@pytest.mark.parametrize(("who", "theirs", "headers", "status", "expected"), DEVIATIONS)
def test_deviations_of_other_frameworks_are_handled(
    who: str,
    theirs: int,
    headers: dict[str, str],
    status: int,
    expected: tuple[tuple[int, int], ...],
) -> None:
    d = get(headers)
    assert d.status == status != theirs, who
    assert d.ranges == expected
    assert body(d) == b"".join(DATA[a:b] for a, b in expected)


# -- HTTP dates and ETags ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [LM_TEXT, "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", f"  {LM_TEXT}\t"],
)
def test_parse_http_date_accepts_the_three_formats(value: str) -> None:
    assert parse_http_date(value) == LM


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 +0000",  # numeric zone: not an HTTP-date
        "Sun, 06 Nov 1994 08:49:37 gmt",  # case-sensitive
        "Sun, 6 Nov 1994 08:49:37 GMT",  # two-digit day required
        "Sun, 06 Nov 1994",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "784111777",
        "",
    ],
)
def test_parse_http_date_rejects(value: str) -> None:
    assert parse_http_date(value) is None


def test_parse_http_date_edge_values() -> None:
    leap = parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT")
    assert leap == parse_http_date("Sun, 01 Jan 2017 00:00:00 GMT")
    # Two-digit years: more than 50 years ahead means the previous century.
    now_2026 = 1_780_000_000.0
    assert parse_http_date("Wednesday, 01-Jan-70 00:00:00 GMT", now=now_2026) == 3_155_760_000
    assert parse_http_date("Thursday, 01-Jan-26 00:00:00 GMT", now=now_2026) == 1_767_225_600
    in_2076 = parse_http_date("Wednesday, 01-Jan-76 00:00:00 GMT", now=now_2026)
    assert in_2076 == 3_345_062_400  # exactly 50 years ahead is still the future
    assert parse_http_date("Saturday, 01-Jan-77 00:00:00 GMT", now=now_2026) == 220_924_800


def test_format_http_date_is_imf_fixdate_and_round_trips() -> None:
    assert format_http_date(LM + 0.999) == LM_TEXT
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    for ts in (0, 1, LM, 2**31 + 5, 253402300799):
        assert parse_http_date(format_http_date(ts)) == ts


def test_etag_for() -> None:
    tag = etag_for(1024, 1_700_000_000_123_456_789)
    assert tag == '"17979cfe3d85cd15-400"'
    assert etag_for(1024, 1_700_000_000_123_456_789, ino=255) == '"17979cfe3d85cd15-400-ff"'
    assert etag_for(1025, 1_700_000_000_123_456_789) != tag
    assert etag_for(1024, 1_700_000_000_123_456_790) != tag
    Representation(length=1, etag=tag)  # a valid strong entity-tag
    bad_args: list[tuple[Any, Any, Any]] = [
        (-1, 0, None),
        (0, -1, None),
        (0, 0, -1),
        (1.5, 0, None),
    ]
    for bad in bad_args:
        with pytest.raises(ConfigError):
            etag_for(*bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": -1},
        {"length": 2**63},
        {"length": True},
        {"length": 1.0},
        {"length": 1, "etag": "abc"},
        {"length": 1, "etag": '"a b"'},
        {"length": 1, "etag": 'w/"a"'},
        {"length": 1, "last_modified": float("nan")},
        {"length": 1, "content_type": ""},
        {"length": 1, "content_type": "text/plain\r\nX-Evil: 1"},
    ],
)
def test_representation_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Representation(**kwargs)  # type: ignore[arg-type]


def test_iter_body_checks_the_data_length() -> None:
    with pytest.raises(ConfigError):
        list(iter_body(get({}), REP, b"short"))


def test_docstring_examples() -> None:
    result = doctest.testmod(ranges)
    assert result.attempted >= 8 and result.failed == 0


# -- property tests against a reference model -----------------------------------------

MAX = 16
RangeSpecs = list[tuple[int | None, int | None]]


@st.composite
def _length_and_specs(draw: st.DrawFn) -> tuple[int, RangeSpecs]:
    """A length and range-specs near it.

    Half the cases are random specs (mostly narrow, some open, suffix or past the
    end: they overlap a lot); the other half walk up the representation with gaps
    (0 = adjacent), then maybe shuffle or repeat a spec, to reach multipart answers.
    """
    length = draw(st.integers(0, 300))
    if draw(st.booleans()):
        near = st.integers(0, length + 20)
        spec = st.one_of(
            st.tuples(near, st.integers(0, 12)).map(lambda t: (t[0], t[0] + t[1])),
            st.tuples(near, st.none()),
            st.tuples(st.none(), st.integers(0, 25)),
            st.tuples(st.integers(0, 400), st.integers(0, 400)).map(lambda t: (min(t), max(t))),
        )
        return length, draw(st.lists(spec, min_size=1, max_size=20))
    specs: RangeSpecs = []
    pos = draw(st.integers(0, 10))
    for _ in range(draw(st.integers(1, 18))):
        width = draw(st.integers(1, 15))
        specs.append((pos, pos + width - 1))
        pos += width + draw(st.integers(0, 12))
    if draw(st.booleans()):
        specs = draw(st.permutations(specs))
    if draw(st.booleans()):
        specs.append(draw(st.sampled_from(specs)))
    return length, specs


def _text(specs: list[tuple[int | None, int | None]], sep: str) -> str:
    def one(s: tuple[int | None, int | None]) -> str:
        first, last = s
        if first is None:
            return f"-{last}"
        return f"{first}-" if last is None else f"{first}-{last}"

    return "bytes=" + sep.join(one(s) for s in specs)


def _model_indices(spec: tuple[int | None, int | None], length: int) -> set[int]:
    """The byte positions a spec selects, straight from the RFC's words."""
    first, last = spec
    if first is None:
        assert last is not None
        return set(range(length)[-last:]) if last else set()
    return {i for i in range(length) if i >= first and (last is None or i <= last)}


@settings(max_examples=300, deadline=None)
@given(case=_length_and_specs(), sep=st.sampled_from([",", ", ", " ,\t", ",,"]))
def test_decisions_match_the_reference_model(case: tuple[int, RangeSpecs], sep: str) -> None:
    length, specs = case
    rep = Representation(length=length, content_type="application/x-test")
    header = _text(specs, sep)
    assert parse_range(header) == specs
    d = evaluate("GET", {"Range": header}, rep, boundary="b", max_ranges=MAX)

    # Invariants that hold for every decision.
    assert all(0 <= a < b <= length for a, b in d.ranges)
    covered = [i for a, b in d.ranges for i in range(a, b)]
    assert len(covered) == len(set(covered))  # disjoint
    flat = sorted(d.ranges)
    assert all(p[1] < q[0] for p, q in pairwise(flat))  # and never adjacent
    payload = b"".join(iter_body(d, rep, DATA[:length]))
    if d.status in (200, 206):
        assert d.header("Content-Length") == str(len(payload))

    # The model's verdict.
    sets = [_model_indices(s, length) for s in specs]
    chosen = [s for s in sets if s]
    union: set[int] = set().union(*sets)
    overlapping_pairs = sum(1 for i, a in enumerate(chosen) for b in chosen[i + 1 :] if a & b)
    descents = sum(1 for a, b in pairwise(chosen) if min(b) < min(a))
    if len(specs) > MAX:
        expected = Reason.TOO_MANY_RANGES
    elif length == 0:
        expected = Reason.EMPTY_REPRESENTATION
    elif not chosen:
        expected = Reason.UNSATISFIABLE
    elif sum(map(len, chosen)) > length or overlapping_pairs > 1:
        expected = Reason.OVERLAP_ATTACK
    elif descents > 2:
        expected = Reason.OUT_OF_ORDER
    else:
        expected = Reason.SINGLE_RANGE if len(d.ranges) == 1 else Reason.MULTIPLE_RANGES
    assert d.reason == expected

    if d.status == 200:
        assert d.ranges == (((0, length),) if length else ())
        assert payload == DATA[:length]
    elif d.status == 416:
        assert d.ranges == () and d.header("Content-Range") == f"bytes */{length}"
    else:
        assert d.status == 206
        assert set(covered) == union
        # Parts sit in the order of their first member in the request (§14.6).
        first_member = [
            min(k for k, s in enumerate(chosen) if s & set(range(a, b))) for a, b in d.ranges
        ]
        assert first_member == sorted(first_member)
        if all(min(a) <= min(b) for a, b in pairwise(chosen)):
            assert list(d.ranges) == flat  # ascending request, ascending parts
        if len(d.ranges) == 1:
            ((a, b),) = d.ranges
            assert payload == DATA[a:b]
            assert d.header("Content-Range") == f"bytes {a}-{b - 1}/{length}"
        else:
            parts = split_multipart(payload, "b")
            assert [p[1] for p in parts] == [DATA[a:b] for a, b in d.ranges]
            assert [p[0]["Content-Range"] for p in parts] == [
                f"bytes {a}-{b - 1}/{length}" for a, b in d.ranges
            ]


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(alphabet="bytes=0123456789-, \t;xW/\"'", max_size=60),
    length=st.integers(0, 50),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    if_range=st.none() | st.text(max_size=30),
)
def test_arbitrary_headers_never_raise(
    value: str, length: int, method: str, if_range: str | None
) -> None:
    headers = [("Range", value)] + ([("If-Range", if_range)] if if_range is not None else [])
    rep = Representation(length=length, etag='"t"', last_modified=LM)
    d = evaluate(method, headers, rep)
    assert d.status in (200, 206, 416)
    assert all(0 <= a < b <= length for a, b in d.ranges)
    parsed = parse_range(value)
    if d.reason == Reason.INVALID_RANGE:
        assert parsed is None
    if d.status == 206:
        assert parsed is not None


@settings(max_examples=200, deadline=None)
@given(
    etags=st.lists(
        st.tuples(st.booleans(), st.text(alphabet="abc,v1", max_size=4)), min_size=1, max_size=5
    ),
    current=st.tuples(st.booleans(), st.text(alphabet="abc,v1", max_size=4)),
)
def test_entity_tag_comparisons_match_the_model(
    etags: list[tuple[bool, str]], current: tuple[bool, str]
) -> None:
    def render(weak: bool, opaque: str) -> str:
        return ('W/"%s"' if weak else '"%s"') % opaque

    rep = Representation(length=10, etag=render(*current))
    listing = ", ".join(render(*t) for t in etags)
    weak_match = any(o == current[1] for _, o in etags)
    strong_match = not current[0] and (False, current[1]) in etags
    assert (evaluate("GET", {"If-None-Match": listing}, rep).status == 304) is weak_match
    assert (evaluate("GET", {"If-Match": listing}, rep).status != 412) is strong_match


def test_sum_rule_boundary() -> None:
    hundred = Representation(length=100)
    d = get({"Range": "bytes=0-49,50-99"}, hundred)  # sum == length: served, coalesced
    assert (d.status, d.ranges) == (206, ((0, 100),))
    d = get({"Range": "bytes=0-50,50-99"}, hundred)  # one byte over
    assert (d.status, d.reason) == (200, Reason.OVERLAP_ATTACK)


@pytest.mark.parametrize("content_type", ["text/plain; charset=\u20ac", " text/plain", "a\x7fb"])
def test_content_type_must_be_a_latin1_field_value(content_type: str) -> None:
    with pytest.raises(ConfigError):
        Representation(length=1, content_type=content_type)


# -- the guide's table is checked against the code ---------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "range-requests.md"
ELIDED = {  # rows whose header the guide abbreviates with "…"
    "`Range: bytes=0-0,1-1,…` (17 specs)": [
        ("Range", "bytes=" + ",".join(f"{i}-{i}" for i in range(17)))
    ],
    "`Range: bytes=0-,5-0,5-1,…,5-1299` (CVE-2011-3192)": [
        ("Range", "bytes=0-," + ",".join(f"5-{i}" for i in range(1300)))
    ],
}


def _guide_rows() -> list[tuple[str, str, int, str]]:
    rows = []
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in {"GET", "HEAD", "POST", "PUT"}:
            rows.append((cells[0], cells[1], int(cells[2]), cells[3].strip("`")))
    return rows


def test_the_guide_has_its_table() -> None:
    assert len(_guide_rows()) >= 30


@pytest.mark.parametrize(("method", "cell", "status", "reason"), _guide_rows())
def test_guide_table_row(method: str, cell: str, status: int, reason: str) -> None:
    rep = REP
    if cell.endswith("on an empty file"):
        rep = Representation(length=0, etag='"v1"', last_modified=LM)
    if cell in ELIDED:
        headers = ELIDED[cell]
    else:
        spans = re.findall(r"`([^`]*)`", cell)
        headers = [tuple(s.split(": ", 1)) for s in spans]
        assert cell == "(none)" or " + ".join(f"`{s}`" for s in spans) in cell
    d = evaluate(method, headers, rep)
    assert (d.status, d.reason) == (status, reason)
