"""RFC 9110 §13–14: conditional and Range requests, decided without I/O.

Like h11, this module knows nothing of sockets or event loops. Give :func:`evaluate`
the request method, the request headers and a :class:`Representation` (length and
validators) and it returns a :class:`Decision`: the status, the byte ranges to send
and the headers to add. The caller then streams the bytes however it likes::

    rep = Representation(length=10_000, etag='"v1"', content_type="video/mp4")
    d = evaluate("GET", {"range": "bytes=-500"}, rep)
    assert (d.status, d.ranges) == (206, ((9500, 10_000),))
    assert ("Content-Range", "bytes 9500-9999/10000") in d.headers

For several parts, :func:`multipart_parts` gives the ``multipart/byteranges``
framing (the bytes to write before each slice and after the last) so that a file
can be streamed slice by slice; the decision's ``Content-Length`` already counts it.

How odd requests are answered (each choice is allowed by RFC 9110):

* **Invalid Range syntax is ignored: 200 with the whole representation**, never
  416. §14.2 lets a server ignore or reject an invalid ``ranges-specifier``; the
  whole representation is always correct bytes, whereas a 416 leaves a broken
  client with nothing. The same rule covers ``bytes=5-2`` (last before first),
  empty range sets, signs, spaces inside numbers and ``other-range`` forms. Only
  a syntactically valid set none of whose members overlaps the representation
  gets 416 (with ``Content-Range: bytes */LEN``).
* An unknown range unit (``items=0-5``) is ignored: 200 (§14.2 MUST).
* A set with at least one satisfiable member is answered 206 for the satisfiable
  members; the others are dropped (§14.1.1).
* Overlapping and adjacent ranges are coalesced (§14.2 MAY); the surviving parts
  keep the order of their first member in the request (§14.6 SHOULD), so parts
  are ascending whenever the request was.
* One part is a plain 206 with ``Content-Range``; ``multipart/byteranges`` is used
  only for two or more parts.
* A zero-length representation ignores Range: 200 with an empty body (a 416
  would break clients that send ``Range: bytes=0-`` on every request).
* Defences (§14.2, CVE-2011-3192 "Apache Killer"), each answered with a plain
  200: a Range field longer than :data:`MAX_RANGE_FIELD_LENGTH` characters; more
  than ``max_ranges`` range-specs; satisfiable ranges whose lengths add up to more
  than the representation; more than two ranges involved in overlaps; more than
  two range-specs that start before the one listed before them. The field is
  measured before it is split, at most ``max_ranges`` specs are parsed and the
  rest is a sort, so the work is O(n log n) in a header of bounded size.
* Range is honoured for GET only (§14.2 MUST ignore it for other methods); HEAD
  gets exactly the headers of a GET without Range.
* Preconditions are evaluated in the order of §13.2.2; If-Match uses the strong
  comparison, If-None-Match the weak one, If-Range needs a strong ETag or an
  HTTP-date equal to Last-Modified to the second. Unparseable members of an
  entity-tag list are skipped, which can only turn a match into a mismatch: the
  safe direction for every field.
"""

from __future__ import annotations

import calendar
import email.utils
import enum
import itertools
import math
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from sluicegate.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_RANGES",
    "MAX_RANGE_FIELD_LENGTH",
    "BodyPart",
    "Decision",
    "MultipartBody",
    "Reason",
    "Representation",
    "etag_for",
    "evaluate",
    "format_http_date",
    "iter_body",
    "multipart_parts",
    "parse_http_date",
    "parse_range",
]

DEFAULT_MAX_RANGES = 16
"""More range-specs than this in one request get the whole representation."""

MAX_RANGE_FIELD_LENGTH = 4096
"""A Range field longer than this (in characters) is ignored before it is parsed."""

# Byte positions above this cannot address any file; saturating bigger numbers keeps
# int() away from thousand-digit strings and does not change any outcome, because
# Representation.length is capped at the same value.
_MAX_POSITION = 2**63 - 1

# "More than two overlapping ranges" and "many ranges not in ascending order" (§14.2).
_MAX_OVERLAPS = 1
_MAX_DESCENTS = 2

HeaderInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
"""Request headers: a mapping, or (name, value) pairs as str or as ASGI bytes."""


class Reason(enum.StrEnum):
    """Why a :class:`Decision` came out as it did (a ``str``, stable for logs and tests)."""

    NO_RANGE = "no-range"
    """200: the request had no Range field."""
    NOT_GET = "not-get"
    """200: Range came with a method other than GET, so it was ignored."""
    PRECONDITIONS_PASSED = "preconditions-passed"
    """200 for a method other than GET/HEAD: go on with it (no ranges, no headers)."""
    UNKNOWN_UNIT = "unknown-unit"
    """200: the range unit is not ``bytes``."""
    INVALID_RANGE = "invalid-range"
    """200: the Range field is not valid syntax, or was sent twice with different values."""
    RANGE_TOO_LONG = "range-too-long"
    """200: the Range field is longer than :data:`MAX_RANGE_FIELD_LENGTH`."""
    TOO_MANY_RANGES = "too-many-ranges"
    """200: more range-specs than ``max_ranges``."""
    OVERLAP_ATTACK = "overlap-attack"
    """200: the ranges overlap too much (sum above the length, or over two overlap)."""
    OUT_OF_ORDER = "out-of-order"
    """200: more than two range-specs start before the one listed before them."""
    IF_RANGE_MISMATCH = "if-range-mismatch"
    """200: If-Range did not match, so the whole current representation is sent."""
    EMPTY_REPRESENTATION = "empty-representation"
    """200: the representation has no bytes, so there is nothing to select."""
    SINGLE_RANGE = "single-range"
    """206 with one part and ``Content-Range``."""
    MULTIPLE_RANGES = "multiple-ranges"
    """206 with ``multipart/byteranges``."""
    UNSATISFIABLE = "unsatisfiable"
    """416: no range-spec overlaps the representation."""
    IF_MATCH_FAILED = "if-match-failed"
    """412: If-Match named no current entity-tag (strong comparison)."""
    IF_UNMODIFIED_SINCE_FAILED = "if-unmodified-since-failed"
    """412: modified after the If-Unmodified-Since date."""
    IF_NONE_MATCH_MATCHED = "if-none-match-matched"
    """304 for GET/HEAD, 412 otherwise: If-None-Match named the current entity-tag."""
    NOT_MODIFIED_SINCE = "not-modified-since"
    """304: not modified after the If-Modified-Since date."""


_ETAG_RE = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
# field-value (RFC 9110 §5.5): visible Latin-1, inner spaces and tabs, nothing else.
_FIELD_VALUE_RE = re.compile(r"[\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?")


@dataclass(frozen=True, slots=True)
class Representation:
    """What is known of the selected representation before any byte is read.

    Example::

        Representation(length=st.st_size, etag=etag_for(st.st_size, st.st_mtime_ns),
                       last_modified=st.st_mtime, content_type="text/plain; charset=utf-8")

    Attributes:
        length: Size in bytes, ``0 <= length < 2**63``.
        etag: The full entity-tag as sent in ``ETag``, quotes included: ``'"abc"'``
            (strong) or ``'W/"abc"'`` (weak). ``None`` when there is none.
        last_modified: Modification time in POSIX seconds; sent and compared at
            whole-second precision (the fraction is dropped).
        content_type: ``Content-Type`` of the whole representation and of each part.

    Raises:
        ConfigError: for a negative or huge length, a malformed entity-tag, a
            non-finite time, or a content type that is empty or holds CR/LF.
    """

    length: int
    etag: str | None = None
    last_modified: float | None = None
    content_type: str = "application/octet-stream"

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise ConfigError(f"length must be an int, got {self.length!r}")
        if not 0 <= self.length <= _MAX_POSITION:
            raise ConfigError(f"length must be in [0, 2**63 - 1], got {self.length}")
        if self.etag is not None and not _ETAG_RE.fullmatch(self.etag):
            raise ConfigError(f"etag must be a quoted entity-tag like '\"abc\"', got {self.etag!r}")
        if self.last_modified is not None and not math.isfinite(self.last_modified):
            raise ConfigError(f"last_modified must be finite, got {self.last_modified!r}")
        if not _FIELD_VALUE_RE.fullmatch(self.content_type):
            raise ConfigError(
                f"content_type must be a non-empty header value: {self.content_type!r}"
            )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer: the outcome of :func:`evaluate`.

    Attributes:
        status: 200, 206, 304, 412 or 416.
        ranges: Half-open ``(start, stop)`` byte ranges to send, in sending order.
            Disjoint, never empty and never adjacent (adjacent ones are merged).
            ``((0, length),)`` for a 200 of a non-empty representation; ``()`` when
            no representation bytes are sent (304, 412, 416, empty representation,
            methods other than GET/HEAD). For HEAD they are what GET would send:
            the caller sends no body.
        headers: Header fields to add, canonical case, in a stable order:
            ``Accept-Ranges``, ``ETag``, ``Last-Modified``, ``Content-Type``,
            ``Content-Range``, ``Content-Length`` as each status calls for. For 412
            and 416 the body (e.g. problem+json) and its length are the caller's.
        reason: Why, as a :class:`Reason`.
        boundary: The multipart boundary when ``status == 206`` with several parts,
            else ``None``.
    """

    status: int
    ranges: tuple[tuple[int, int], ...]
    headers: tuple[tuple[str, str], ...]
    reason: Reason
    boundary: str | None = None

    @property
    def is_multipart(self) -> bool:
        """True when the body is ``multipart/byteranges`` (see :func:`multipart_parts`)."""
        return self.boundary is not None

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive) in :attr:`headers`, or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a ``multipart/byteranges`` body.

    Attributes:
        header: Bytes to write before the slice: delimiter line, ``Content-Type``,
            ``Content-Range`` and the blank line.
        start: First byte of the slice (inclusive).
        stop: End of the slice (exclusive).
    """

    header: bytes
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class MultipartBody:
    """The framing of a ``multipart/byteranges`` body, computed before any byte is read.

    Write, for each part, ``part.header`` then the representation's bytes
    ``[part.start, part.stop)``; then write ``closing``. The total is exactly
    ``content_length``.
    """

    boundary: str
    content_type: str
    parts: tuple[BodyPart, ...]
    closing: bytes
    content_length: int


# -- HTTP-date -------------------------------------------------------------------

_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_LONG_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MON = "|".join(_MONTHS)
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(rf"(?:{_DAYS}), (\d\d) ({_MON}) (\d{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"(?:{_LONG_DAYS}), (\d\d)-({_MON})-(\d\d) {_TIME} GMT")
_ASCTIME = re.compile(rf"(?:{_DAYS}) ({_MON}) ([ \d]\d) {_TIME} (\d{{4}})")


def format_http_date(timestamp: float) -> str:
    """Format POSIX seconds as an IMF-fixdate, dropping the fraction.

    >>> format_http_date(784111777.9)
    'Sun, 06 Nov 1994 08:49:37 GMT'
    """
    return email.utils.formatdate(math.floor(timestamp), usegmt=True)


def parse_http_date(value: str, *, now: float | None = None) -> int | None:
    """Parse an HTTP-date (RFC 9110 §5.6.7) into whole POSIX seconds, or ``None``.

    Accepts the three formats recipients must accept: IMF-fixdate
    (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form
    (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime (``Sun Nov  6 08:49:37 1994``).
    Matching is exact and case-sensitive as the grammar says: an invalid date must be
    ignored, and :func:`email.utils.parsedate_tz` alone would accept numeric zones,
    missing times and other forms that are not HTTP-dates. A two-digit year more
    than 50 years after ``now`` (default: the current time) is read as the most
    recent past year with those digits.

    >>> parse_http_date("Sun Nov  6 08:49:37 1994")
    784111777
    """
    value = value.strip(" \t")
    if m := _IMF_FIXDATE.fullmatch(value):
        day, mon, year, hh, mm, ss = m.groups()
        year_n = int(year)
    elif m := _RFC850.fullmatch(value):
        day, mon, yy, hh, mm, ss = m.groups()
        current = time.gmtime(time.time() if now is None else now).tm_year
        year_n = current - current % 100 + int(yy)
        if year_n > current + 50:
            year_n -= 100
    elif m := _ASCTIME.fullmatch(value):
        mon, day, hh, mm, ss, year = m.groups()
        year_n = int(year)
    else:
        return None
    day_n, h, mi, s = int(day), int(hh), int(mm), int(ss)
    month = _MONTHS.index(mon) + 1
    if not (
        year_n >= 1
        and 1 <= day_n <= calendar.monthrange(year_n, month)[1]
        and h <= 23
        and mi <= 59
        and s <= 60  # 60 is a leap second
    ):
        return None
    return calendar.timegm((year_n, month, day_n, h, mi, s, 0, 0, 0))


# -- entity-tags -----------------------------------------------------------------


def etag_for(size: int, mtime_ns: int, ino: int | None = None) -> str:
    """A strong ETag for a file from its ``os.stat`` fields.

    Nanosecond mtime and size change whenever the file is rewritten on any file
    system with fine timestamps; add the inode to tell apart files replaced by
    rename. (On a file system with coarse timestamps, two writes of the same size
    within one tick share an ETag: use a content hash there.)

    >>> etag_for(1024, 1_700_000_000_123_456_789)
    '"17979cfe3d85cd15-400"'
    """
    for name, number in (("size", size), ("mtime_ns", mtime_ns), ("ino", ino)):
        if number is not None and (not isinstance(number, int) or number < 0):
            raise ConfigError(f"{name} must be a non-negative int, got {number!r}")
    tag = f"{mtime_ns:x}-{size:x}"
    if ino is not None:
        tag += f"-{ino:x}"
    return f'"{tag}"'


def _etag_list(value: str) -> tuple[bool, list[tuple[bool, str]]]:
    """Parse ``"*" / 1#entity-tag`` into (is_star, [(weak, opaque)]); bad members are skipped."""
    if value.strip(" \t") == "*":
        return True, []
    tags: list[tuple[bool, str]] = []
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] in " \t,":
            pos += 1
            continue
        m = _ETAG_RE.match(value, pos)
        if m is not None:
            rest = m.end()
            while rest < end and value[rest] in " \t":
                rest += 1
            if rest == end or value[rest] == ",":
                tags.append((m.group(1) is not None, m.group(2)))
                pos = rest
                continue
        # Skipping an unreadable member can only lose a match, never invent one.
        comma = value.find(",", pos + 1)
        pos = end if comma < 0 else comma
    return False, tags


def _split_etag(etag: str) -> tuple[bool, str]:
    return etag.startswith("W/"), etag[3:-1] if etag.startswith("W/") else etag[1:-1]


def _matches(value: str, rep: Representation, *, strong: bool) -> bool:
    star, tags = _etag_list(value)
    if star:
        return True  # "*" matches any current representation, and we have one
    if rep.etag is None:
        return False
    weak, opaque = _split_etag(rep.etag)
    if strong:
        return not weak and (False, opaque) in tags
    return any(o == opaque for _, o in tags)


# -- Range -----------------------------------------------------------------------

_RangeSpec = tuple[int | None, int | None]
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_INT_RANGE_RE = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RE = re.compile(r"-([0-9]+)")


def _number(digits: str) -> int:
    digits = digits.lstrip("0")
    return _MAX_POSITION if len(digits) > 19 else min(int(digits or "0"), _MAX_POSITION)


def _split_unit(value: str) -> tuple[str, str] | None:
    unit, eq, rest = value.strip(" \t").partition("=")
    unit = unit.rstrip(" \t")
    if not eq or not _TOKEN_RE.fullmatch(unit):
        return None
    return unit, rest


def _parse_specs(items: list[str]) -> list[_RangeSpec] | None:
    specs: list[_RangeSpec] = []
    for item in items:
        if m := _INT_RANGE_RE.fullmatch(item):
            first = _number(m.group(1))
            last = _number(m.group(2)) if m.group(2) else None
            if last is not None and last < first:
                return None
            specs.append((first, last))
        elif m := _SUFFIX_RE.fullmatch(item):
            specs.append((None, _number(m.group(1))))
        else:
            return None
    return specs if specs else None


def _items(range_set: str) -> list[str]:
    # 1#range-spec: OWS around commas, and empty list elements are to be ignored.
    return [s for s in (part.strip(" \t") for part in range_set.split(",")) if s]


def parse_range(value: str) -> list[tuple[int | None, int | None]] | None:
    """Parse a Range field value into its byte-range-specs, in request order.

    Each spec is ``(first, last)`` for ``first-last`` (``last`` is ``None`` for an
    open range ``first-``) or ``(None, n)`` for the suffix ``-n``. Positions are
    inclusive, as written. Returns ``None`` for a unit other than ``bytes``
    (compared case-insensitively) or for invalid syntax, including a spec whose
    last position is before its first. Numbers beyond ``2**63 - 1`` read as
    ``2**63 - 1``, which selects the same bytes of any representation.

    >>> parse_range("bytes=0-499, -500,9500-")
    [(0, 499), (None, 500), (9500, None)]
    >>> parse_range("items=0-5") is None
    True
    """
    split = _split_unit(value)
    if split is None or split[0].lower() != "bytes":
        return None
    return _parse_specs(_items(split[1]))


def _clamp(spec: _RangeSpec, length: int) -> tuple[int, int] | None:
    """The half-open bytes a spec selects, or None when it is unsatisfiable."""
    first, last = spec
    if first is None:
        assert last is not None
        return (max(0, length - last), length) if last > 0 else None
    if first >= length:
        return None
    return first, length if last is None else min(last + 1, length)


def _coalesce(selected: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping/adjacent ranges; order parts by their first member's position."""
    order = sorted(range(len(selected)), key=lambda i: selected[i])
    groups: list[list[int]] = []  # [start, stop, first_index]
    for i in order:
        start, stop = selected[i]
        if groups and start <= groups[-1][1]:
            group = groups[-1]
            group[1] = max(group[1], stop)
            group[2] = min(group[2], i)
        else:
            groups.append([start, stop, i])
    groups.sort(key=lambda g: g[2])
    return [(g[0], g[1]) for g in groups]


def _overlaps(selected: list[tuple[int, int]]) -> int:
    """How many ranges start inside a range that starts before (or with) them."""
    count, reach = 0, -1
    for start, stop in sorted(selected):
        if start < reach:
            count += 1
        reach = max(reach, stop)
    return count


def _descents(selected: list[tuple[int, int]]) -> int:
    return sum(1 for a, b in itertools.pairwise(selected) if b[0] < a[0])


# -- framing ---------------------------------------------------------------------

_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'+_.\-]{1,70}")


def _content_range(start: int, stop: int, length: int) -> str:
    return f"bytes {start}-{stop - 1}/{length}"


def _framing(
    ranges: tuple[tuple[int, int], ...], boundary: str, content_type: str, length: int
) -> MultipartBody:
    parts = []
    total = 0
    for i, (start, stop) in enumerate(ranges):
        # The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1); the first
        # delimiter has nothing before it, so it needs none.
        header = (b"" if i == 0 else b"\r\n") + (
            f"--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {_content_range(start, stop, length)}\r\n\r\n"
        ).encode("latin-1")
        parts.append(BodyPart(header, start, stop))
        total += len(header) + stop - start
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    return MultipartBody(
        boundary=boundary,
        content_type=f"multipart/byteranges; boundary={boundary}",
        parts=tuple(parts),
        closing=closing,
        content_length=total + len(closing),
    )


def multipart_parts(decision: Decision, rep: Representation) -> MultipartBody:
    """The ``multipart/byteranges`` framing for a multipart ``decision`` about ``rep``.

    A caller streams a file like this (``send`` and ``send_file_slice`` are its own)::

        body = multipart_parts(decision, rep)
        for part in body.parts:
            await send(part.header)
            await send_file_slice(part.start, part.stop)
        await send(body.closing)

    Raises:
        ConfigError: if the decision is not multipart.
    """
    if decision.boundary is None:
        raise ConfigError("decision is not multipart: send decision.ranges as they are")
    return _framing(decision.ranges, decision.boundary, rep.content_type, rep.length)


def iter_body(decision: Decision, rep: Representation, data: bytes) -> Iterator[bytes]:
    """Yield the exact body of ``decision`` for a representation held in memory.

    Nothing is yielded for 304, 412 and 416 (those bodies are the caller's). For a
    HEAD request do not send what this yields.

    >>> rep = Representation(length=10)
    >>> d = evaluate("GET", {"Range": "bytes=2-4"}, rep)
    >>> b"".join(iter_body(d, rep, b"0123456789"))
    b'234'

    Raises:
        ConfigError: if ``len(data)`` is not ``rep.length``.
    """
    if len(data) != rep.length:
        raise ConfigError(f"data has {len(data)} bytes but the representation {rep.length}")
    view = memoryview(data)
    if decision.boundary is None:
        for start, stop in decision.ranges:
            yield bytes(view[start:stop])
        return
    body = multipart_parts(decision, rep)
    for part in body.parts:
        yield part.header
        yield bytes(view[part.start : part.stop])
    yield body.closing


# -- evaluation ------------------------------------------------------------------

_SINGLETONS = ("range", "if-range", "if-modified-since", "if-unmodified-since")
_LISTS = ("if-match", "if-none-match")


def _collect(headers: HeaderInput) -> dict[str, str | None]:
    """The fields evaluate reads; a singleton sent twice with different values is None."""
    seen: dict[str, list[str]] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        name = name.lower()
        if name in _SINGLETONS or name in _LISTS:
            value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
            seen.setdefault(name, []).append(value.strip(" \t"))
    fields: dict[str, str | None] = {}
    for name, values in seen.items():
        if name in _LISTS:
            fields[name] = ", ".join(values)
        else:
            fields[name] = values[0] if len(set(values)) == 1 else None
    return fields


def _validator_headers(rep: Representation) -> list[tuple[str, str]]:
    headers = []
    if rep.etag is not None:
        headers.append(("ETag", rep.etag))
    if rep.last_modified is not None:
        headers.append(("Last-Modified", format_http_date(rep.last_modified)))
    return headers


def _whole(rep: Representation, reason: Reason) -> Decision:
    headers = [("Accept-Ranges", "bytes"), *_validator_headers(rep)]
    headers += [("Content-Type", rep.content_type), ("Content-Length", str(rep.length))]
    ranges = ((0, rep.length),) if rep.length else ()
    return Decision(200, ranges, tuple(headers), reason)


def _if_range_holds(value: str | None, rep: Representation) -> bool:
    if value is None:  # sent twice, differently
        return False
    if value.startswith('"'):
        if rep.etag is None or not _ETAG_RE.fullmatch(value):
            return False
        weak, opaque = _split_etag(rep.etag)
        return not weak and value[1:-1] == opaque
    if value.startswith("W/"):
        return False  # a weak entity-tag never validates a range
    date = parse_http_date(value)
    return (
        date is not None and rep.last_modified is not None and date == math.floor(rep.last_modified)
    )


def _preconditions(
    method: str, fields: dict[str, str | None], rep: Representation
) -> Decision | None:
    """RFC 9110 §13.2.2 steps 1–4; None when the request may go on."""
    modified = None if rep.last_modified is None else math.floor(rep.last_modified)
    if_match = fields.get("if-match")
    if if_match is not None:
        if not _matches(if_match, rep, strong=True):
            return Decision(412, (), (), Reason.IF_MATCH_FAILED)
    elif (ius := fields.get("if-unmodified-since")) is not None and modified is not None:
        date = parse_http_date(ius)
        if date is not None and modified > date:
            return Decision(412, (), (), Reason.IF_UNMODIFIED_SINCE_FAILED)
    if_none_match = fields.get("if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, rep, strong=False):
            if method in ("GET", "HEAD"):
                return Decision(
                    304, (), tuple(_not_modified_headers(rep)), Reason.IF_NONE_MATCH_MATCHED
                )
            return Decision(412, (), (), Reason.IF_NONE_MATCH_MATCHED)
    elif (
        method in ("GET", "HEAD")
        and (ims := fields.get("if-modified-since")) is not None
        and modified is not None
    ):
        date = parse_http_date(ims)
        if date is not None and modified <= date:
            return Decision(304, (), tuple(_not_modified_headers(rep)), Reason.NOT_MODIFIED_SINCE)
    return None


def _not_modified_headers(rep: Representation) -> list[tuple[str, str]]:
    # §15.4.5: ETag is required; other metadata only to guide caches, so
    # Last-Modified only when there is no ETag.
    if rep.etag is not None:
        return [("ETag", rep.etag)]
    return _validator_headers(rep)


def evaluate(
    method: str,
    headers: HeaderInput,
    rep: Representation,
    *,
    max_ranges: int = DEFAULT_MAX_RANGES,
    boundary: str | None = None,
) -> Decision:
    """Decide the answer to a request for ``rep`` (RFC 9110 §13.2.2 and §14).

    Args:
        method: The request method as sent (methods are case-sensitive: ``"GET"``).
        headers: Request headers: a mapping or ``(name, value)`` pairs, str or
            bytes (an ASGI scope's ``headers`` works as is). Names are matched
            case-insensitively; If-Match / If-None-Match lines are combined; Range,
            If-Range and the date fields sent twice with different values are
            treated as invalid.
        rep: The selected representation.
        max_ranges: More range-specs than this get a plain 200.
        boundary: The multipart boundary (1–70 of ``A-Za-z0-9'+_.-``); random when
            ``None``. Used only if the answer is multipart.

    Returns:
        The :class:`Decision`. For methods other than GET and HEAD only the
        preconditions are evaluated: 412, or 200 with no ranges and no headers.

    Raises:
        ConfigError: for ``max_ranges < 1`` or an invalid ``boundary``.

    >>> rep = Representation(length=100, etag='"a"')
    >>> evaluate("GET", [("Range", "bytes=0-9,99999999-")], rep).ranges
    ((0, 10),)
    >>> evaluate("GET", {"Range": "bytes=0-9", "If-Range": '"old"'}, rep).status
    200
    """
    if max_ranges < 1:
        raise ConfigError(f"max_ranges must be at least 1, got {max_ranges}")
    if boundary is not None and not _BOUNDARY_RE.fullmatch(boundary):
        raise ConfigError(f"boundary must be 1-70 of A-Za-z0-9'+_.- : {boundary!r}")
    # The phases of §13.2.2: preconditions, then whether Range applies, then which
    # ranges it selects, then the answer.
    fields = _collect(headers)
    gated = _gate(method, fields, rep)
    if gated is not None:
        return gated
    specs = _range_specs(fields["range"], rep, max_ranges)
    if isinstance(specs, Decision):
        return specs
    selected = _select(specs, rep)
    if isinstance(selected, Decision):
        return selected
    return _partial(tuple(_coalesce(selected)), rep, boundary)


def _gate(method: str, fields: dict[str, str | None], rep: Representation) -> Decision | None:
    """The answer when preconditions fail or Range does not apply; None to go on."""
    failed = _preconditions(method, fields, rep)
    if failed is not None:
        return failed
    if method not in ("GET", "HEAD"):
        return Decision(200, (), (), Reason.PRECONDITIONS_PASSED)
    if "range" not in fields:
        return _whole(rep, Reason.NO_RANGE)
    if method != "GET":
        return _whole(rep, Reason.NOT_GET)
    if "if-range" in fields and not _if_range_holds(fields["if-range"], rep):
        return _whole(rep, Reason.IF_RANGE_MISMATCH)
    return None


def _range_specs(
    value: str | None, rep: Representation, max_ranges: int
) -> list[_RangeSpec] | Decision:
    """The Range field's byte-range-specs, or the whole representation and why not."""
    if value is None:
        return _whole(rep, Reason.INVALID_RANGE)
    if len(value) > MAX_RANGE_FIELD_LENGTH:
        return _whole(rep, Reason.RANGE_TOO_LONG)
    split = _split_unit(value)
    if split is None:
        return _whole(rep, Reason.INVALID_RANGE)
    if split[0].lower() != "bytes":
        return _whole(rep, Reason.UNKNOWN_UNIT)
    items = _items(split[1])
    if len(items) > max_ranges:
        return _whole(rep, Reason.TOO_MANY_RANGES)
    specs = _parse_specs(items)
    if specs is None:
        return _whole(rep, Reason.INVALID_RANGE)
    if rep.length == 0:
        return _whole(rep, Reason.EMPTY_REPRESENTATION)
    return specs


def _select(specs: list[_RangeSpec], rep: Representation) -> list[tuple[int, int]] | Decision:
    """The satisfiable ranges, or a 416, or the whole representation for abuse."""
    selected = [r for r in (_clamp(s, rep.length) for s in specs) if r is not None]
    if not selected:
        headers_416 = (("Accept-Ranges", "bytes"), ("Content-Range", f"bytes */{rep.length}"))
        return Decision(416, (), headers_416, Reason.UNSATISFIABLE)
    if (
        sum(stop - start for start, stop in selected) > rep.length
        or _overlaps(selected) > _MAX_OVERLAPS
    ):
        return _whole(rep, Reason.OVERLAP_ATTACK)
    if _descents(selected) > _MAX_DESCENTS:
        return _whole(rep, Reason.OUT_OF_ORDER)
    return selected


def _partial(
    ranges: tuple[tuple[int, int], ...], rep: Representation, boundary: str | None
) -> Decision:
    """The 206 for ``ranges``: one part, or multipart/byteranges."""
    out = [("Accept-Ranges", "bytes"), *_validator_headers(rep)]
    if len(ranges) == 1:
        ((start, stop),) = ranges
        out += [
            ("Content-Type", rep.content_type),
            ("Content-Range", _content_range(start, stop, rep.length)),
            ("Content-Length", str(stop - start)),
        ]
        return Decision(206, ranges, tuple(out), Reason.SINGLE_RANGE)
    chosen = boundary if boundary is not None else secrets.token_hex(16)
    body = _framing(ranges, chosen, rep.content_type, rep.length)
    out += [("Content-Type", body.content_type), ("Content-Length", str(body.content_length))]
    return Decision(206, ranges, tuple(out), Reason.MULTIPLE_RANGES, chosen)
