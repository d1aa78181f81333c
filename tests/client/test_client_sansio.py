"""Sans-IO pieces of the client: units, token bucket, schedule, digests, resume, mix."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.client.digests import format_sha256, parse_sha256
from sluicegate.client.ratelimit import TokenBucket, default_rcvbuf, read_size_for
from sluicegate.client.resume import (
    PartMeta,
    Plan,
    parse_content_range,
    plan_response,
    request_headers,
)
from sluicegate.client.schedule import Event, ScheduleCursor, parse_schedule
from sluicegate.client.swarm import allocate, is_loopback, parse_mix, percentile
from sluicegate.errors import ConfigError
from sluicegate.units import parse_duration, parse_rate, parse_size

# -- units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512", 512),
        ("64K", 65536),
        ("64k", 65536),
        ("1.5MB", 1_500_000),
        ("10M", 10 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1KB", 1000),
        (" 3 B ", 3),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "K", "1Q", "-1K", "1..5M", "10 MBs"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="bad size"):
        parse_size(text)


def test_parse_rate() -> None:
    assert parse_rate("10M/s") == parse_rate("10M") == 10 * 1024**2
    for bad in ("0", "0K/s", "/s", "fast"):
        with pytest.raises(ConfigError, match="bad rate"):
            parse_rate(bad)


def test_parse_duration() -> None:
    assert parse_duration("19") == parse_duration("19s") == 19.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120.0
    assert parse_duration("forever") == math.inf
    with pytest.raises(ConfigError, match="unknown unit 'd'"):
        parse_duration("1d")


# -- token bucket on a fake clock ----------------------------------------------------------


def test_bucket_paces_a_greedy_reader_at_the_rate() -> None:
    rate, burst = 100_000.0, 5_000
    bucket = TokenBucket(rate, burst, now=0.0)
    now, total = 0.0, 0
    while now < 10.0:
        now += bucket.delay_for(burst, now)
        n = bucket.available(now)
        bucket.consume(n, now)
        total += n
    assert rate * 10 - burst <= total <= rate * 10 + 2 * burst


def test_bucket_does_not_bank_credit_while_idle() -> None:
    bucket = TokenBucket(1000.0, 100, now=0.0)
    bucket.consume(100, 0.0)
    assert bucket.available(60.0) == 100  # a minute idle still gives one burst only


def test_bucket_rate_change_and_unlimited() -> None:
    bucket = TokenBucket(1000.0, 100, now=0.0)
    bucket.consume(100, 0.0)
    assert bucket.delay_for(100, 0.0) == pytest.approx(0.1)
    bucket.set_rate(None, 4096, 0.0)
    assert bucket.delay_for(10**9, 0.0) == 0.0 and bucket.available(0.0) == 4096
    bucket.set_rate(10.0, 10, 1.0)
    assert bucket.available(1.0) <= 10
    with pytest.raises(ConfigError):
        TokenBucket(0, 10, now=0.0)


@given(st.lists(st.tuples(st.floats(0, 0.5), st.integers(0, 10_000)), min_size=1, max_size=200))
def test_bucket_never_allows_more_than_burst_plus_rate_times_time(
    steps: list[tuple[float, int]],
) -> None:
    rate, burst = 20_000.0, 2_000
    bucket = TokenBucket(rate, burst, now=0.0)
    now, total = 0.0, 0
    for dt, want in steps:
        now += dt
        n = min(want, bucket.available(now))
        bucket.consume(n, now)
        total += n
    assert total <= burst + rate * now + 1


def test_read_size_and_rcvbuf_follow_the_rate() -> None:
    assert read_size_for(None) == 256 * 1024
    assert read_size_for(64 * 1024) == 3276
    assert read_size_for(10) == 1024
    assert default_rcvbuf(None) is None
    assert default_rcvbuf(64 * 1024) == 16 * 1024
    assert default_rcvbuf(10 * 1024**2) == 1024**2


# -- schedule ---------------------------------------------------------------------------


def test_parse_schedule_orders_events() -> None:
    s = parse_schedule(" 5s:rate=1M , 1s:pause=19s,30s:stop,2s:pause,3s:rate=unlimited")
    assert s.events == (
        Event(1.0, "pause", 19.0),
        Event(2.0, "pause", math.inf),
        Event(3.0, "rate", None),
        Event(5.0, "rate", 1024.0**2),
        Event(30.0, "stop"),
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected TIME:ACTION"),
        ("1s", "item 1 '1s': expected TIME:ACTION"),
        ("1s:pause=19s,xs:stop", "item 2 'xs:stop': time: bad duration"),
        ("1s:pause=0s", "pause must last more than 0 s"),
        ("1s:pause=abc", "pause: bad duration"),
        ("1s:rate=", "rate needs a value"),
        ("1s:rate=1Q", "bad rate '1Q'"),
        ("1s:stop=now", "stop takes no value"),
        ("1s:jump", "unknown action 'jump'"),
        ("inf:stop", "time must be finite"),
    ],
)
def test_parse_schedule_errors_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="bad schedule") as info:
        parse_schedule(spec)
    assert message in str(info.value)


def test_cursor_hands_out_each_event_once() -> None:
    cursor = ScheduleCursor(parse_schedule("1s:pause=2s,1s:rate=1K,4s:stop"))
    assert cursor.pop(0.5) is None
    assert cursor.next_at() == 1.0
    assert cursor.pop(1.0) == Event(1.0, "pause", 2.0)
    assert cursor.pop(1.0) == Event(1.0, "rate", 1024.0)
    assert cursor.pop(3.9) is None
    assert cursor.pop(10.0) == Event(4.0, "stop")
    assert cursor.pop(10.0) is None and cursor.next_at() is None


# -- digests ----------------------------------------------------------------------------


def test_digest_round_trip_and_other_algorithms() -> None:
    raw = hashlib.sha256(b"abc").digest()
    value = format_sha256(raw)
    assert parse_sha256(value) == raw
    assert parse_sha256(f"sha-512=:AAAA:, {value};foo=1") == raw
    assert parse_sha256("sha-512=:AAAA:") is None
    assert parse_sha256("sha-256=not-base64") is None
    assert parse_sha256("sha-256=:AAAA:") is None  # wrong length
    assert parse_sha256("") is None


# -- resume decisions ---------------------------------------------------------------------


def test_request_headers_need_a_strong_validator_for_the_same_url() -> None:
    url = "http://h/f"
    assert request_headers(10, PartMeta(url, etag='"a"'), url) == (
        10,
        [("Range", "bytes=10-"), ("If-Range", '"a"')],
    )
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert request_headers(10, PartMeta(url, etag='W/"a"', last_modified=lm), url)[1][1] == (
        "If-Range",
        lm,
    )
    assert request_headers(10, PartMeta(url, etag='W/"a"'), url) == (0, [])
    assert request_headers(10, PartMeta("http://h/other", etag='"a"'), url) == (0, [])
    assert request_headers(0, PartMeta(url, etag='"a"'), url) == (0, [])
    assert request_headers(10, None, url) == (0, [])


def test_part_meta_round_trip(tmp_path: Path) -> None:
    meta = PartMeta("http://h/f", '"a"', None, 10)
    path = tmp_path / "f.part.json"
    meta.save(path)
    assert PartMeta.load(path) == meta
    path.write_text("{not json")
    assert PartMeta.load(path) is None
    assert PartMeta.load(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("status", "headers", "offset", "plan"),
    [
        (200, {"content-length": "100"}, 0, Plan("write", 0, 100)),
        (200, {"content-length": "100"}, 40, Plan("write", 0, 100)),
        (206, {"content-range": "bytes 40-99/100"}, 40, Plan("append", 40, 100)),
        (206, {"content-range": "bytes 40-99/*"}, 40, Plan("append", 40, None)),
        (206, {"content-range": "bytes 0-99/100"}, 40, Plan("retry")),
        (206, {}, 40, Plan("retry")),
        (206, {"content-range": "bytes 0-99/100"}, 0, Plan("error")),
        (416, {"content-range": "bytes */40"}, 40, Plan("done", 40, 40)),
        (416, {"content-range": "bytes */30"}, 40, Plan("retry")),
        (404, {}, 0, Plan("error")),
        (301, {}, 40, Plan("error")),
    ],
)
def test_plan_response(status: int, headers: dict[str, str], offset: int, plan: Plan) -> None:
    assert plan_response(status, headers, offset) == plan


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 10-19/100") == (10, 19, 100)
    assert parse_content_range("bytes */100") == (None, None, 100)
    assert parse_content_range("items 1-2/3") is None


# -- swarm mix --------------------------------------------------------------------------


def test_parse_mix() -> None:
    mix = parse_mix("fast:90,slow=64K:9,stall:1")
    assert [(e.kind, e.weight, e.rate) for e in mix] == [
        ("fast", 90, None),
        ("slow", 9, 65536.0),
        ("stall", 1, None),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected KIND"),
        ("fast:0", "item 1 'fast:0': weight '0'"),
        ("fast:x", "weight 'x'"),
        ("fast:1,slow:2", "item 2 'slow:2': slow needs a rate"),
        ("slow=1Q:2", "bad rate '1Q'"),
        ("fast=1M:1", "fast takes no rate"),
        ("quick:1", "unknown kind 'quick'"),
        ("fast:1,fast:2", "appears twice"),
    ],
)
def test_parse_mix_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="bad mix") as info:
        parse_mix(spec)
    assert message in str(info.value)


@given(st.lists(st.integers(1, 100), min_size=1, max_size=6), st.integers(0, 2000))
def test_allocate_is_proportional_and_exact(weights: list[int], clients: int) -> None:
    counts = allocate(weights, clients)
    assert sum(counts) == clients
    total = sum(weights)
    for w, n in zip(weights, counts, strict=True):
        assert abs(n - clients * w / total) < 1


def test_loopback_and_percentile() -> None:
    for host in ("localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "example.com", "::ffff:8.8.8.8", "128.0.0.1"):
        assert not is_loopback(host), host
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(1, 101)), 99) == 99
