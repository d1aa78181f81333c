"""Read timeouts for uvicorn: a deadline for request headers, a stall limit for bodies.

*Slowloris* opens many connections and sends each request's headers a line every
few seconds, never finishing; a variant declares a ``Content-Length`` and never sends
the body. uvicorn has no timeout for either (its keep-alive timeout is armed only
between requests, and any byte cancels it), so every such connection is held until
the client gives up. nginx has ``client_header_timeout`` and ``client_body_timeout``,
Go ``ReadHeaderTimeout`` and ``ReadTimeout``; this module gives uvicorn the same two:

* **header timeout**: the whole request head must arrive within this many seconds of
  its first byte (or of the connection, for the first request). A trickle does not
  extend it: that is the point.
* **body timeout**: while a request body is being read, at most this many seconds
  may pass between two reads. Time while the *app* is not reading (uvicorn paused the
  socket because its buffer is full, or the client waits for ``100 Continue``) is not
  the client's and does not count.

Over either, the client gets a ``408`` problem+json with ``Connection: close`` if no
response has started, and the connection is closed. Nothing is read-limited once the
request is in: a slow *reader* of the response is the guard's business.

The logic is sans-IO (:class:`ReadClock`: phases, one transition table, deadlines
from the time passed in); :func:`with_read_timeouts` is the thin layer that feeds it
from uvicorn's protocol callbacks. It hooks only what both of uvicorn's HTTP
protocols (``httptools`` and ``h11``) share: ``data_received``,
``on_response_complete``, ``cycle`` (``more_body``, ``response_started``,
``response_complete``) and ``flow.read_paused``, because uvicorn offers no option or
hook for this (as of 0.54).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any

from sluicegate.errors import ConfigError
from sluicegate.http.problem import MEDIA_TYPE, problem_body

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "Event",
    "Phase",
    "ReadClock",
    "with_read_timeouts",
]

logger = logging.getLogger("sluicegate")

#: Seconds a request head may take from its first byte (nginx: 60 s; a real client
#: sends its head in one packet, so far less is plenty and frees slowloris sooner).
DEFAULT_HEADER_TIMEOUT = 20.0
#: Seconds between two reads of a request body (nginx: 60 s).
DEFAULT_BODY_TIMEOUT = 30.0


class Phase(enum.Enum):
    """What a connection is waiting for from its client."""

    START = "start"  #: not connected yet
    HEADERS = "headers"  #: a request head (deadline: header timeout from its start)
    BODY = "body"  #: more of a request body (deadline: body timeout from the last read)
    QUIET = "quiet"  #: nothing: the app is answering, or the connection idles (keep-alive)
    DONE = "done"  #: not HTTP/1.1 any more (upgraded): no deadline ever again


class Event(enum.Enum):
    """What the protocol layer tells a :class:`ReadClock`."""

    CONNECTED = "connected"
    REQUEST_BYTES = "request_bytes"  #: bytes of a new request after a complete response
    HEADERS_WITH_BODY = "headers_with_body"
    HEADERS_WITHOUT_BODY = "headers_without_body"
    BODY_BYTES = "body_bytes"
    READ_PAUSED = "read_paused"  #: the deadline passed while the app was not reading
    BODY_DONE = "body_done"
    UPGRADED = "upgraded"  #: the connection now speaks another protocol (WebSocket)
    CLOSED = "closed"


_HEAD = {Event.HEADERS_WITH_BODY: Phase.BODY, Event.HEADERS_WITHOUT_BODY: Phase.QUIET}

#: (phase, event) -> next phase. Absent pairs are illegal. A head can complete in any
#: phase but START: a pipelined request is parsed while the previous one is answered.
TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.START, Event.CONNECTED): Phase.HEADERS,
    (Phase.QUIET, Event.REQUEST_BYTES): Phase.HEADERS,
    (Phase.BODY, Event.BODY_BYTES): Phase.BODY,
    (Phase.BODY, Event.READ_PAUSED): Phase.BODY,
    (Phase.BODY, Event.BODY_DONE): Phase.QUIET,
    **{(p, e): to for p in (Phase.HEADERS, Phase.BODY, Phase.QUIET) for e, to in _HEAD.items()},
    **{(p, e): Phase.DONE for p in Phase for e in (Event.UPGRADED, Event.CLOSED)},
}


class ReadClock:
    """The read deadline of one connection (sans-IO: time is passed in).

    >>> clock = ReadClock(header_timeout=10.0, body_timeout=5.0)
    >>> clock.on(Event.CONNECTED, now=100.0); clock.phase, clock.deadline
    (<Phase.HEADERS: 'headers'>, 110.0)
    >>> clock.on(Event.HEADERS_WITH_BODY, now=101.0); clock.deadline
    106.0
    >>> clock.on(Event.BODY_BYTES, now=104.0); clock.deadline
    109.0
    >>> clock.on(Event.BODY_DONE, now=104.5); clock.phase, clock.deadline
    (<Phase.QUIET: 'quiet'>, None)
    """

    __slots__ = ("body_timeout", "deadline", "header_timeout", "phase")

    def __init__(self, *, header_timeout: float | None, body_timeout: float | None) -> None:
        for name, value in (("header_timeout", header_timeout), ("body_timeout", body_timeout)):
            if value is not None and not 0 < value < 1e9:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.phase = Phase.START
        #: When the client is out of time (loop clock), or None: no limit now.
        self.deadline: float | None = None

    def on(self, event: Event, now: float) -> None:
        """Apply ``event`` at time ``now``; raises :class:`ValueError` if illegal."""
        try:
            to = TRANSITIONS[self.phase, event]
        except KeyError:
            raise ValueError(f"{event.name} is illegal in phase {self.phase.name}") from None
        entering = to is not self.phase
        self.phase = to
        if to is Phase.HEADERS:
            if entering and self.header_timeout is not None:
                self.deadline = now + self.header_timeout
        elif to is Phase.BODY:
            self.deadline = None if self.body_timeout is None else now + self.body_timeout
        else:
            self.deadline = None

    def expired(self, now: float) -> bool:
        """Whether the deadline has passed at ``now``."""
        return self.deadline is not None and now >= self.deadline


def with_read_timeouts(
    base: type[asyncio.Protocol], *, header_timeout: float | None, body_timeout: float | None
) -> type[asyncio.Protocol]:
    """``base`` (a uvicorn HTTP/1.1 protocol class) with the two read timeouts.

    Raises :class:`~sluicegate.errors.ConfigError` on a timeout that is not a
    positive number of seconds (None: that timeout is off).
    """
    ReadClock(header_timeout=header_timeout, body_timeout=body_timeout)  # validate now
    proto: Any = base

    class ReadTimeouts(proto):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._rt_loop = asyncio.get_running_loop()
            self._rt_clock = ReadClock(header_timeout=header_timeout, body_timeout=body_timeout)
            self._rt_timer: asyncio.TimerHandle | None = None
            self._rt_app_waited = False  # the last check found the app not reading
            self._rt_cycle = self.cycle
            self._rt_event(Event.CONNECTED)

        def data_received(self, data: bytes) -> None:
            clock = self._rt_clock
            if clock.phase is Phase.QUIET and (self.cycle is None or self.cycle.response_complete):
                self._rt_event(Event.REQUEST_BYTES)
            super().data_received(data)
            self._rt_observe(got_bytes=True)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._rt_observe(got_bytes=False)  # uvicorn may now parse a pipelined head

        def connection_lost(self, exc: Exception | None) -> None:
            self._rt_clock.on(Event.CLOSED, self._rt_loop.time())
            self._rt_cancel()
            super().connection_lost(exc)

        def _rt_observe(self, *, got_bytes: bool) -> None:
            clock = self._rt_clock
            if clock.phase is Phase.DONE:
                return
            if self.transport.get_protocol() is not self:  # upgraded (WebSocket)
                self._rt_event(Event.UPGRADED)
                return
            cycle = self.cycle
            if cycle is not self._rt_cycle:
                self._rt_cycle = cycle
                reading = cycle.more_body and not cycle.response_complete
                self._rt_event(Event.HEADERS_WITH_BODY if reading else Event.HEADERS_WITHOUT_BODY)
            elif clock.phase is Phase.BODY:
                if not cycle.more_body or cycle.response_complete:
                    self._rt_event(Event.BODY_DONE)
                elif got_bytes:
                    self._rt_event(Event.BODY_BYTES)

        def _rt_event(self, event: Event) -> None:
            self._rt_clock.on(event, self._rt_loop.time())
            self._rt_arm()

        def _rt_arm(self) -> None:
            # One timer per connection, moved lazily: a body read only pushes the
            # deadline; the timer, when it fires early, re-arms for the new one.
            deadline = self._rt_clock.deadline
            if deadline is None:
                self._rt_cancel()
            elif self._rt_timer is None or self._rt_timer.when() > deadline:
                self._rt_cancel()
                self._rt_timer = self._rt_loop.call_at(deadline, self._rt_fire)

        def _rt_cancel(self) -> None:
            if self._rt_timer is not None:
                self._rt_timer.cancel()
                self._rt_timer = None

        def _rt_fire(self) -> None:
            self._rt_timer = None
            clock = self._rt_clock
            now = self._rt_loop.time()
            if not clock.expired(now):
                self._rt_arm()  # the deadline moved (a read came) or is gone
                return
            app_waits = self.flow.read_paused or getattr(
                self.cycle, "waiting_for_100_continue", False
            )
            if clock.phase is Phase.BODY and (app_waits or self._rt_app_waited):
                # The app is not reading (uvicorn's buffer is full, or the client is
                # rightly waiting for "100 Continue", sent when the app first reads).
                # Once it reads again, the client gets one whole period from the next
                # check on: it could not send before.
                self._rt_app_waited = app_waits
                self._rt_event(Event.READ_PAUSED)
                return
            self._rt_expire(clock.phase)

        def _rt_expire(self, phase: Phase) -> None:
            transport = self.transport
            if transport.is_closing():
                return
            what = "request head" if phase is Phase.HEADERS else "request body"
            limit = header_timeout if phase is Phase.HEADERS else body_timeout
            logger.debug("read timeout: closing %s after %s s of %s", self.client, limit, what)
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                transport.write(_timeout_response(what, limit))
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
            transport.close()

    ReadTimeouts.__name__ = ReadTimeouts.__qualname__ = f"ReadTimeouts{base.__name__}"
    return ReadTimeouts


def _timeout_response(what: str, limit: float | None) -> bytes:
    detail = f"the {what} did not arrive within {limit or 0:g} s"
    body = problem_body(408, "Request Timeout", detail, timeout=what)
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"content-type: {MEDIA_TYPE}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
