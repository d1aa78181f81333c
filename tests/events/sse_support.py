"""Test helpers: an SSE reader written from the WHATWG spec, and a raw-socket SSE client.

The reader follows "Server-sent events", section "Interpreting an event stream", step
by step (it is the reference the framing is tested against, so it shares no code
with it): lines end at CRLF, LF or CR; a blank line dispatches; ``:`` starts a
comment; one space after the colon is stripped; an event whose data buffer is empty
is not dispatched; ``id`` with NUL is ignored; ``retry`` takes ASCII digits only.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

_LINE = re.compile(r"\r\n|\r|\n")


@dataclass
class Parsed:
    """One dispatched event, as ``EventSource`` would fire it."""

    data: str
    event: str = "message"
    last_event_id: str = ""


@dataclass
class SSEReader:
    """Feed it text as it arrives; it returns the events dispatched so far."""

    last_event_id: str = ""
    retry: int | None = None
    comments: int = 0
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _pending: str = ""

    def feed(self, text: str) -> list[Parsed]:
        buffer = self._pending + text
        out: list[Parsed] = []
        lines = _LINE.split(buffer)
        # The last piece has no line end yet; and a lone trailing CR may be half a CRLF.
        self._pending = lines.pop()
        if buffer.endswith("\r"):
            self._pending = lines.pop() + "\r" if lines else "\r"
        for line in lines:
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def _line(self, line: str) -> Parsed | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Parsed | None:
        if not self._data:
            self._event = ""
            return None
        event = Parsed("\n".join(self._data), self._event or "message", self.last_event_id)
        self._data, self._event = [], ""
        return event


def parse(text: str) -> list[Parsed]:
    """Every event of a complete stream."""
    return SSEReader().feed(text)


class SSEClient:
    """A raw-socket HTTP/1.1 SSE client: request, headers, then events as they come."""

    def __init__(self, port: int, path: str, last_event_id: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        head = f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}\r\n"
        self.sock.sendall(head.encode())
        self.reader = SSEReader()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.closed = False
        self._raw = b""
        self._body = b""
        self._head()

    def _head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("closed before the headers ended")
            self._raw += more
        head, _, rest = self._raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self._raw = rest

    def _dechunk(self) -> str:
        """Text of the complete chunks received so far (chunked encoding)."""
        out = b""
        while True:
            size_end = self._raw.find(b"\r\n")
            if size_end < 0:
                break
            size = int(self._raw[:size_end].split(b";")[0], 16)
            if size == 0:
                self.closed = True
                self._raw = b""
                break
            if len(self._raw) < size_end + 2 + size + 2:
                break
            out += self._raw[size_end + 2 : size_end + 2 + size]
            self._raw = self._raw[size_end + 2 + size + 2 :]
        self._body += out
        return out.decode("utf-8")

    def events(self, count: int, timeout: float = 10.0) -> list[Parsed]:
        """Read until ``count`` events arrived, the body ended, or ``timeout`` passed."""
        got: list[Parsed] = []
        deadline = time.monotonic() + timeout
        got += self.reader.feed(self._dechunk())
        while len(got) < count and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                more = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                self.closed = True
                break
            if not more:
                self.closed = True
                break
            self._raw += more
            got += self.reader.feed(self._dechunk())
        return got

    def read_all(self) -> bytes:
        """The rest of a response that has a Content-Length (a problem document)."""
        size = int(self.headers.get("content-length", "0"))
        while len(self._raw) < size:
            more = self.sock.recv(65536)
            if not more:
                break
            self._raw += more
        return self._raw[:size]

    def body(self) -> bytes:
        """Every body byte received so far."""
        return self._body

    def close(self) -> None:
        self.sock.close()
