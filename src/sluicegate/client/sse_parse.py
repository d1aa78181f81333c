"""Sans-IO reading of an SSE response: the HTTP/1.1 head, chunked framing, events.

Plain bytes in, plain values out, no socket: :class:`ResponseHead` (:func:`parse_head`),
:class:`ChunkedDecoder` and :class:`EventParser`. The subscriber in
:mod:`sluicegate.client.sse_reader` feeds them from an asyncio protocol.

Why by hand, when h11 exists (and :func:`~sluicegate.client.fetch` uses it): a load
client for thousands of subscribers at tens of thousands of events per second must
not be the bottleneck, on a machine where it shares two cores with the server. h11
turns every chunk into an event object through a generic state machine; here a
chunk costs a ``find`` and a slice. Only what an SSE response needs is handled: a
``200`` head, then a chunked, length-delimited or close-delimited body.

The event parser follows the WHATWG "parse an event stream" algorithm: lines end in
CRLF, LF or CR (a CR at the end of one feed and an LF at the start of the next are one
line end); ``:`` starts a comment; a field's value loses one leading space; ``data``
lines are joined with LF; an ``id`` containing NUL is ignored; ``retry`` is kept only
if it is all ASCII digits; a blank line dispatches the event if it has data. ``data``
stays bytes (a load client measures events, it need not decode them).

>>> p = EventParser()
>>> [(m.id, m.event, m.data) for m in p.feed(b"id: 7\\r\\nevent: tick\\ndata: a\\rdata: b\\n\\n")]
[('7', 'tick', b'a\\nb')]
>>> ChunkedDecoder().feed(b"5\\r\\nHello\\r\\n0\\r\\n\\r\\n")
[b'Hello']
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD",
    "MAX_LINE",
    "ChunkedDecoder",
    "EventParser",
    "ResponseHead",
    "SSEMessage",
    "WireError",
    "parse_head",
]

#: a response head larger than this is refused (a load client holds thousands)
MAX_HEAD = 16 * 1024
#: an SSE line or a chunk-size line longer than this is refused, for the same reason
MAX_LINE = 1024 * 1024


class WireError(ValueError):
    """The bytes are not a well-formed response (bad head, bad chunk, overlong line)."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The parts of a response head a subscriber acts on."""

    status: int
    #: lower-case names; a repeated header keeps its last value
    headers: dict[str, str]

    @property
    def chunked(self) -> bool:
        """True when the body is ``Transfer-Encoding: chunked``."""
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        """The ``Content-Length``, if any (ignored when chunked)."""
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None


def parse_head(head: bytes) -> ResponseHead:
    """Parse an HTTP/1.x response head (without the blank line that ends it).

    >>> h = parse_head(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\n"
    ...                b"Transfer-Encoding: chunked")
    >>> h.status, h.headers["content-type"], h.chunked
    (200, 'text/event-stream', True)
    """
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise WireError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise WireError(f"bad header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return ResponseHead(int(code), headers)


class _Chunk(enum.Enum):
    """Where a :class:`ChunkedDecoder` is in the chunked framing (RFC 9112 §7.1)."""

    SIZE = "size"  # reading a chunk-size line
    DATA = "data"  # reading chunk data
    DATA_END = "data-end"  # expecting the CRLF after the data
    TRAILER = "trailer"  # after the last chunk: trailer lines until a blank one
    DONE = "done"


#: the legal moves; anything else is a bug in the decoder, not bad input
_CHUNK_MOVES: dict[_Chunk, frozenset[_Chunk]] = {
    _Chunk.SIZE: frozenset({_Chunk.DATA, _Chunk.TRAILER}),
    _Chunk.DATA: frozenset({_Chunk.DATA_END}),
    _Chunk.DATA_END: frozenset({_Chunk.SIZE}),
    _Chunk.TRAILER: frozenset({_Chunk.DONE}),
    _Chunk.DONE: frozenset(),
}


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder: framed bytes in, data out.

    Chunk extensions and trailer fields are read and ignored. :attr:`done` is set after
    the last chunk's trailer section.
    """

    __slots__ = ("_buf", "_left", "state")

    def __init__(self) -> None:
        self.state = _Chunk.SIZE
        self._buf = b""
        self._left = 0

    @property
    def done(self) -> bool:
        """True once the final (zero-size) chunk and its trailers have been read."""
        return self.state is _Chunk.DONE

    def _move(self, to: _Chunk) -> None:
        if to not in _CHUNK_MOVES[self.state]:  # pragma: no cover - a decoder bug
            raise AssertionError(f"chunked decoder: {self.state.value} -> {to.value}")
        self.state = to

    @staticmethod
    def _whole_chunks(data: bytes, out: list[bytes]) -> int:
        """Append the data of the whole, non-final chunks ``data`` starts with; return
        where the first other one starts (the state machine reads it)."""
        pos, n = 0, len(data)
        while True:
            end = data.find(b"\r\n", pos, pos + 64)
            if end < 0:
                return pos
            size = _chunk_size(data[pos:end])
            stop = end + 2 + size
            if not size or stop + 2 > n or data[stop : stop + 2] != b"\r\n":
                return pos
            out.append(data[end + 2 : stop])
            pos = stop + 2
            if pos == n:
                return pos

    def _line(self, pos: int) -> tuple[bytes | None, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            if len(self._buf) - pos > MAX_LINE:
                raise WireError("chunk-size or trailer line too long")
            return None, pos
        return self._buf[pos:end], end + 2

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes; return the chunk data they complete (possibly none)."""
        out: list[bytes] = []
        pos = 0
        if self.state is _Chunk.SIZE and not self._buf:
            # The common read: whole chunks (a live feed's events, one or a few),
            # taken without stepping the state machine; it takes over at the first
            # chunk that is not whole here, or the last one.
            pos = self._whole_chunks(data, out)
            if pos == len(data):
                return out
        buf = self._buf + data if self._buf else data
        self._buf = buf
        n = len(buf)
        while pos < n:
            state = self.state
            if state is _Chunk.DATA:
                take = min(self._left, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._move(_Chunk.DATA_END)
            elif state is _Chunk.SIZE:
                line, pos2 = self._line(pos)
                if line is None:
                    break
                size = _chunk_size(line)
                pos = pos2
                self._left = size
                self._move(_Chunk.DATA if size else _Chunk.TRAILER)
            elif state is _Chunk.DATA_END:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise WireError("chunk data not followed by CRLF")
                pos += 2
                self._move(_Chunk.SIZE)
            elif state is _Chunk.TRAILER:
                line, pos2 = self._line(pos)
                if line is None:
                    break
                pos = pos2
                if not line:
                    self._move(_Chunk.DONE)
            else:  # DONE: whatever follows is not ours
                pos = n
        self._buf = buf[pos:] if pos < n else b""
        return out


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions ignored); WireError if it has none."""
    size_text = line.split(b";", 1)[0].strip()
    try:
        size = int(size_text, 16)
    except ValueError:
        raise WireError(f"bad chunk size {line[:40]!r}") from None
    if size < 0 or not size_text.isalnum():
        raise WireError(f"bad chunk size {line[:40]!r}")
    return size


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event: ``id`` is the last event id in force (sticky, as in browsers)."""

    data: bytes
    event: str = "message"
    id: str | None = None


class EventParser:
    """Incremental ``text/event-stream`` parser (WHATWG), bytes in, :class:`SSEMessage` out.

    :attr:`last_id` is the id a reconnect sends as ``Last-Event-ID``; :attr:`retry` the
    last valid ``retry`` (ms); :attr:`comments` counts comment lines (heartbeats).
    """

    __slots__ = (
        "_bom",
        "_cr",
        "_data",
        "_event",
        "_has_data",
        "_pending",
        "comments",
        "last_id",
        "retry",
    )

    def __init__(self) -> None:
        self._pending = b""
        self._cr = False  # the last feed ended in CR: an LF first in the next is its pair
        self._bom = True  # a UTF-8 BOM may open the stream
        self._data: list[bytes] = []
        self._has_data = False
        self._event = ""
        self.last_id: str | None = None
        self.retry: int | None = None
        self.comments = 0

    def feed(self, data: bytes) -> list[SSEMessage]:
        """Take the next body bytes; return the events they complete."""
        if self._cr:
            self._cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" in data:
            self._cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._bom:
            joined = self._pending + data
            if len(joined) < 3 and b"\xef\xbb\xbf".startswith(joined):
                self._pending = joined
                return []
            self._bom = False
            data, self._pending = joined.removeprefix(b"\xef\xbb\xbf"), b""
        lines = (self._pending + data).split(b"\n") if self._pending else data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE:
            raise WireError(f"event-stream line longer than {MAX_LINE} bytes")
        out: list[SSEMessage] = []
        for line in lines:
            if not line:
                if self._has_data:
                    parts = self._data
                    data = parts[0] if len(parts) == 1 else b"\n".join(parts)
                    out.append(SSEMessage(data, self._event or "message", self.last_id))
                self._data = []
                self._has_data = False
                self._event = ""
            elif line[0] == 0x3A:  # ":"
                self.comments += 1
            elif line[:5] == b"data:":  # the common line, without the general _field
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                self._has_data = True
            else:
                self._field(line)
        return out

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._has_data = True
        elif name == b"id":
            if b"\0" not in value:
                self.last_id = value.decode("utf-8", "replace")
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry = int(value)
        # other field names are ignored, as the algorithm says
