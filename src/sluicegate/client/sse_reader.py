"""One SSE subscriber as a bare asyncio protocol: thousands of them in one process.

Why a :class:`asyncio.Protocol` and not streams or :func:`~sluicegate.client.fetch`: a
load client must cost less than the server it loads. A protocol gets each read as a
callback (no task switch, no ``StreamReader`` buffer copy), and the sans-IO parsers of
:mod:`sluicegate.client.sse_parse` cost a ``find`` and a slice per event. The time of
receipt is read once per socket read, not once per event.

Three behaviours:

``fast``   read everything at once
``slow``   read at ``rate`` bytes/s: a small ``SO_RCVBUF`` and an Ethernet-sized MSS
           set before connecting (as :func:`~sluicegate.client.fetch` does: loopback's
           64 KiB MSS would let the server's send buffer grow to megabytes), and
           reading paused while over the rate, so TCP flow control reaches the server
``stall``  read the head, then pause reading for good: the server's send queue fills

:func:`subscribe` runs one subscriber until ``stop`` is set: it connects (to the next
of its targets after a drop, with ``Last-Event-ID``), counts into a
:class:`~sluicegate.client.sse_tally.Tally` and a
:class:`~sluicegate.client.sse_tally.Sequence`, and reconnects if asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from sluicegate.client.fetch import PACED_MSS, _set_mss
from sluicegate.client.sse_parse import (
    MAX_HEAD,
    ChunkedDecoder,
    EventParser,
    ResponseHead,
    WireError,
    parse_head,
)
from sluicegate.client.sse_tally import Sequence as Numbers
from sluicegate.client.sse_tally import Tally, read_stamp

__all__ = ["SLOW_RCVBUF", "Behaviour", "Subscriber", "subscribe"]

Kind = Literal["fast", "slow", "stall"]
#: receive buffer of a slow or stalled subscriber: the kernel may not read ahead much
SLOW_RCVBUF = 4096
#: how long to wait before reconnecting after a drop (the server's retry hint wins)
RECONNECT_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one subscriber reads."""

    kind: Kind = "fast"
    #: bytes/s for ``slow``
    rate: float | None = None


def request_bytes(host: str, path: str, last_id: str | None) -> bytes:
    """The GET of an SSE subscription, with ``Last-Event-ID`` when resuming.

    >>> request_bytes("127.0.0.1:8000", "/events", "0-5").split(b"\\r\\n")[-3]
    b'Last-Event-ID: 0-5'
    """
    resume = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\n{resume}\r\n"
    ).encode("latin-1")


class Subscriber(asyncio.Protocol):
    """One connection of one subscriber; counts into ``tally`` and ``numbers``."""

    def __init__(
        self,
        request: bytes,
        behaviour: Behaviour,
        tally: Tally,
        numbers: Numbers,
        *,
        last_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.request = request
        self.behaviour = behaviour
        self.tally = tally
        self.numbers = numbers
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.head: ResponseHead | None = None
        self.parser = EventParser()
        self.parser.last_id = last_id
        self._head_buf = b""
        self._chunks: ChunkedDecoder | None = None
        self._debt = 0.0
        self._debt_at = 0.0
        self._paused = False
        self.closed: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        #: set once the head is in (or the connection failed before it)
        self.headed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    # -- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            if self.head is None:
                data = self._read_head(data)
                if self.head is None or not data:
                    return
            self._body(data)
        except WireError as exc:
            self.fail(f"bad response: {exc}")

    def eof_received(self) -> bool | None:
        return None  # close the transport: the stream ended

    def connection_lost(self, exc: Exception | None) -> None:
        reason = None if exc is None else f"connection lost: {type(exc).__name__}"
        if not self.headed.done():
            self.headed.set_result(False)
            reason = reason or "closed before the response head"
            self.tally.error(reason)
        if not self.closed.done():
            self.closed.set_result(reason)

    # -- the work ---------------------------------------------------------------------------

    def fail(self, message: str) -> None:
        """Count an error and drop the connection."""
        self.tally.error(message)
        if not self.headed.done():
            self.headed.set_result(False)
        if self.transport is not None:
            self.transport.abort()

    def _read_head(self, data: bytes) -> bytes:
        buf = self._head_buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise WireError(f"response head larger than {MAX_HEAD} bytes")
            self._head_buf = buf
            return b""
        self._head_buf = b""
        head = parse_head(buf[:end])
        if head.status != 200 or not head.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            self.fail(f"status {head.status} {head.headers.get('content-type', '')}".strip())
            return b""
        self.head = head
        self.tally.connected += 1
        if head.chunked:
            self._chunks = ChunkedDecoder()
        self.headed.set_result(True)
        if self.behaviour.kind == "stall" and self.transport is not None:
            self.transport.pause_reading()
            return b""
        return buf[end + 4 :]

    def _body(self, data: bytes) -> None:
        now = self.clock()
        self.tally.bytes += len(data)
        pieces = self._chunks.feed(data) if self._chunks is not None else (data,)
        for piece in pieces:
            for message in self.parser.feed(piece):
                self._message(message.event, message.data, now)
        if self._chunks is not None and self._chunks.done and self.transport is not None:
            self.transport.close()
        elif self.behaviour.kind == "slow":
            self._pace(len(data))

    def _message(self, event: str, data: bytes, now: float) -> None:
        tally = self.tally
        if event == "resync":
            tally.resyncs += 1
            self.numbers.restart()
            return
        stamp = read_stamp(data)
        if stamp is None:
            tally.unstamped += 1
            return
        n, t = stamp
        if self.numbers.see(n):
            tally.latencies.append(now - t)

    def _pace(self, n: int) -> None:
        rate = self.behaviour.rate or 1.0
        now = time.monotonic()
        self._debt = max(0.0, self._debt - (now - self._debt_at) * rate) + n
        self._debt_at = now
        if self._debt > 0 and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(self._debt / rate, self._resume)

    def _resume(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


def _socket(behaviour: Behaviour) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if behaviour.kind != "fast":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        _set_mss(sock, PACED_MSS)
    return sock


async def connect(
    target: tuple[str, int],
    path: str,
    behaviour: Behaviour,
    tally: Tally,
    numbers: Numbers,
    last_id: str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - the connect-and-head timeout
) -> Subscriber | None:
    """Open one subscription; return the protocol once its head is in, or None."""
    loop = asyncio.get_running_loop()
    host, port = target
    request = request_bytes(f"{host}:{port}", path, last_id)
    sock = _socket(behaviour)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            _, proto = await loop.create_connection(
                lambda: Subscriber(request, behaviour, tally, numbers, last_id=last_id),
                sock=sock,
            )
            ok = await proto.headed
    except (OSError, TimeoutError) as exc:
        sock.close()
        tally.error(f"connection failed: {type(exc).__name__}")
        return None
    if not ok:
        with contextlib.suppress(asyncio.CancelledError):
            await proto.closed
        return None
    return proto


async def subscribe(
    targets: Sequence[tuple[str, int]],
    path: str,
    behaviour: Behaviour,
    tally: Tally,
    stop: asyncio.Event,
    *,
    numbers: Numbers | None = None,
    gate: asyncio.Semaphore | None = None,
    reconnect: bool = False,
    live: set[Subscriber] | None = None,
) -> Numbers:
    """One subscriber until ``stop``: connect, count into ``numbers`` (a new one if
    None), and reconnect (round robin over ``targets``, with ``Last-Event-ID``) if
    ``reconnect``. Returns its numbers.

    ``gate`` bounds how many connect at once (a burst of 10,000 SYNs overflows the
    listen backlog); ``live`` holds the open connections, for whoever ends the run or
    cuts some at random.
    """
    numbers = numbers if numbers is not None else Numbers()
    last_id: str | None = None
    turn = 0
    while not stop.is_set():
        target = targets[turn % len(targets)]
        turn += 1
        if gate is not None:
            async with gate:
                proto = await connect(target, path, behaviour, tally, numbers, last_id)
        else:
            proto = await connect(target, path, behaviour, tally, numbers, last_id)
        if proto is not None:
            if live is not None:
                live.add(proto)
            try:
                await proto.closed
            finally:
                if live is not None:
                    live.discard(proto)
                tally.heartbeats += proto.parser.comments
            last_id = proto.parser.last_id
        if not reconnect or stop.is_set():
            break
        tally.reconnects += 1
        retry = proto.parser.retry if proto is not None else None
        delay = RECONNECT_DELAY if retry is None else min(retry / 1000, 5.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
    return numbers
