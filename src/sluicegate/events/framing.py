"""Server-sent events on the wire: one event in, its ``text/event-stream`` bytes out (sans-IO).

The format (WHATWG HTML, "Server-sent events") is line based: ``field: value`` lines
ended by LF, CR or CRLF, and a blank line that dispatches the event. Three things are
easy to get wrong, and are why this is hand-written rather than an f-string at each
call site:

* **Multi-line data.** A value may not contain a line break, so data with breaks
  becomes one ``data:`` line per line (any of CRLF, CR, LF counts as a break; the
  reader joins them back with LF).
* **Empty data.** A browser drops an event whose data buffer is empty, so an event
  always carries at least one ``data:`` line, even for ``""``.
* **Fields that would break the framing.** ``id`` and ``event`` with a line break (or
  an ``id`` with NUL, which browsers ignore) are refused with
  :class:`~sluicegate.events.errors.EventError`, never sent half-framed.

Data may be ``str``, UTF-8 ``bytes``, or anything ``json.dumps`` accepts (compact
separators, non-ASCII kept as is)::

    >>> encode(Event({"n": 1}, event="tick", id="0-1"))
    b'id: 0-1\\nevent: tick\\ndata: {"n":1}\\n\\n'
    >>> encode(Event("two\\nlines"))
    b'data: two\\ndata: lines\\n\\n'
    >>> comment("keep-alive")
    b': keep-alive\\n\\n'

A :class:`~sluicegate.events.broadcast.Broadcast` encodes each event once without its
id (:func:`encode_body`) and puts the id line in front once the backend has given it
one (:func:`with_id`); every subscriber then shares those bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from sluicegate.events.errors import EventError

__all__ = ["Event", "comment", "encode", "encode_body", "retry_hint", "with_id"]

# Any of the three line terminators the format knows.
_BREAK: Final = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event.

    :param data: ``str``, UTF-8 ``bytes``, or a JSON-serialisable value.
    :param event: the event type (``message`` when None), what ``addEventListener`` names.
    :param id: what the client sends back as ``Last-Event-ID`` after a reconnect. A
        :class:`~sluicegate.events.broadcast.Broadcast` assigns ids itself.
    :param retry: milliseconds the client should wait before reconnecting.
    """

    data: Any = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def data_text(data: Any) -> str:
    """The text an event's data stands for: str as is, bytes as UTF-8, else JSON."""
    if isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventError(f"event data must be UTF-8 text: {exc}") from None
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise EventError(f"event data is not str, bytes or JSON-serialisable: {exc}") from None


def encode_body(data: Any = "", *, event: str | None = None, retry: int | None = None) -> bytes:
    """An event without its ``id`` line: ``event``, ``retry``, ``data`` lines, blank line."""
    parts: list[str] = []
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise EventError(f"retry must be a number of milliseconds >= 0, not {retry!r}")
        parts.append(f"retry: {retry}\n")
    for line in _BREAK.split(data_text(data)):
        # One space after the colon: the reader strips exactly one, so data that
        # starts with a space keeps it.
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def with_id(event_id: str, body: bytes) -> bytes:
    """Put an ``id`` line in front of a body made by :func:`encode_body`."""
    _check_field("id", event_id)
    return b"id: " + event_id.encode("utf-8") + b"\n" + body


def encode(event: Event) -> bytes:
    """The bytes of one whole event."""
    body = encode_body(event.data, event=event.event, retry=event.retry)
    return body if event.id is None else with_id(event.id, body)


def comment(text: str = "") -> bytes:
    """A comment block (what heartbeats are): readers ignore it, proxies see traffic."""
    lines = _BREAK.split(text)
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode("utf-8") + b"\n"


def retry_hint(milliseconds: int) -> bytes:
    """A block that only sets the client's reconnection delay."""
    if not isinstance(milliseconds, int) or isinstance(milliseconds, bool) or milliseconds < 0:
        raise EventError(f"retry must be a number of milliseconds >= 0, not {milliseconds!r}")
    return f"retry: {milliseconds}\n\n".encode()


def _check_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise EventError(f"event {name} must be a str, not {type(value).__name__}")
    if "\n" in value or "\r" in value:
        raise EventError(f"event {name} must not contain a line break: {value!r}")
    if name == "id" and "\0" in value:
        # Browsers ignore an id field containing NUL: the client would resume wrong.
        raise EventError(f"event id must not contain NUL: {value!r}")
