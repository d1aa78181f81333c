"""``StreamResponse``: an ASGI application that streams any producer with bounded memory.

It is also a Starlette ``Response``, so it can be returned from Starlette, FastAPI or
any framework that speaks ASGI::

    async def rows():
        async for row in db.fetch("SELECT ..."):
            yield f"{row.id},{row.name}\\n"

    @app.get("/export.csv")
    async def export():
        return StreamResponse(rows(), media_type="text/csv")

Lifecycle:

* **Deferred commit.** Headers go out with the first chunk. A producer that fails
  before its first chunk gets the client a real ``500`` with a problem+json body.
* **After the commit** the status cannot change; a failing producer aborts the
  response: no terminating chunk (or a short body under ``Content-Length``), so every
  client sees an incomplete transfer.
* **Client gone.** The producer is cancelled and closed (async generators
  ``aclose()``\\ d, sync generators ``close()``\\ d in their thread, files closed).
* **Sizes known in advance** (bytes, files, sized sources, or a body that ended
  before the commit) are sent as ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from sluicegate.engine import caveats
from sluicegate.engine.channel import DEFAULT_LIMIT, Bytes, Channel
from sluicegate.engine.failure import OnError, check_policy, final_chunk
from sluicegate.engine.metrics import REGISTRY, StreamMetrics
from sluicegate.engine.pump import MAX_MESSAGE, Producer, Pump
from sluicegate.engine.sources import (
    AsyncIterSource,
    BytesSource,
    ChannelSource,
    Content,
    Source,
    as_source,
)
from sluicegate.errors import ClientDisconnected, ConfigError, StreamTimedOut
from sluicegate.http.integrity import Digester, digest_of
from sluicegate.http.problem import send_problem
from sluicegate.interfaces import (
    Admission,
    AdmissionTicket,
    GuardFactory,
    Refusal,
    TransferState,
)
from sluicegate.ledger.base import Ledger
from sluicegate.ledger.gate import EndGate

__all__ = [
    "Admission",
    "AdmissionTicket",
    "Defaults",
    "GuardFactory",
    "Refusal",
    "StreamResponse",
    "defaults",
]

logger = logging.getLogger("sluicegate")


@dataclass(slots=True)
class Defaults:
    """App-wide defaults for every :class:`StreamResponse` that does not set its own.

    >>> import sluicegate
    >>> sluicegate.defaults.high_water_mark
    65536
    """

    high_water_mark: int = DEFAULT_LIMIT
    #: slow-reader protection: stall timeout and minimum rate
    guard: GuardFactory | None = None
    #: stream and memory budgets
    admission: Admission | None = None
    #: the transfer ledger every stream is recorded in (see :mod:`sluicegate.ledger`)
    ledger: Ledger | None = None
    #: where the ledger's routes are mounted, for the ``Link`` header clients follow
    ledger_path: str = "/transfers"
    #: the most a message grows to while the server takes every message at once
    #: (fewer sends for big chunks: less CPU per GB); None keeps every message at
    #: ``max_message``. Turn it on only under a server whose buffer is counted in
    #: bytes, such as uvicorn's 64 KiB write mark (``sluicegate serve`` does): granian
    #: holds a number of messages, so bigger ones mean more memory per stream.
    burst_message: int | None = None
    #: let a live feed's publisher send an event itself to a subscriber whose stream
    #: waits with nothing queued (:meth:`~sluicegate.engine.channel.Channel.deliver`):
    #: no task switch per subscriber. The server's ``send()`` then starts in the
    #: publisher's task (in the stream's context variables); turn it off under a
    #: ``send`` wrapper that binds itself to the current task (``asyncio.timeout`` or an
    #: anyio cancel scope around the inner send).
    direct_delivery: bool = True


#: The defaults in force; change their fields at start-up.
defaults = Defaults()

_UNSET: Any = object()


class StreamResponse(Response):
    """Stream ``content`` to the client, holding at most ``high_water_mark`` bytes.

    ``content`` may be an async or sync iterable of chunks (``bytes``, ``bytearray``,
    ``memoryview`` or ``str``; chunks are sent by reference, without a copy, so do
    not reuse a ``bytearray`` after yielding it), a binary file object, ``bytes``/``str``, a
    :class:`~sluicegate.PullSource` or a :class:`~sluicegate.Channel`.

    :param high_water_mark: bytes sluicegate may hold for this stream beyond the
        producer's current chunk (read-ahead plus the message in flight).
    :param content_length: the body's size when you know it and sluicegate cannot.
    :param max_message: the largest ``http.response.body`` message (default: 64 KiB,
        growing to 256 KiB, or 4 budgets if less, while the server takes every
        message at once).
    :param guard: slow-reader protection (default: ``sluicegate.defaults.guard``);
        a stream that breaks it is cut like a failure and recorded as ``timed_out``.
    :param admission: stream and memory budgets (default:
        ``sluicegate.defaults.admission``); over budget, a ``503`` with
        ``Retry-After`` is sent before anything is produced.
    :param on_error: what a failure after the commit does to the body: ``"abort"``
        (no terminating chunk), ``"inband"`` (an error record for event streams and
        NDJSON) or a callable; see :mod:`sluicegate.engine.failure`.
    :param digest: compute a SHA-256 of what is sent (RFC 9530 ``Repr-Digest``): as a
        header when the body is in memory, as a trailer when the server and client
        support trailers, and always in the ledger. On by default with a ledger.
    :param ledger: record the transfer (default: ``sluicegate.defaults.ledger``);
        the response then carries ``Transfer-Id`` and a ``Link`` to its status.
    """

    media_type = "application/octet-stream"

    def __init__(
        self,
        content: Content | Source,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        high_water_mark: int | None = None,
        content_length: int | None = None,
        charset: str = "utf-8",
        max_message: int | None = None,
        guard: GuardFactory | None = _UNSET,
        admission: Admission | None = _UNSET,
        on_error: OnError = "abort",
        digest: bool | None = None,
        ledger: Ledger | None = _UNSET,
    ) -> None:
        if high_water_mark is None:
            high_water_mark = defaults.high_water_mark
        if not isinstance(high_water_mark, int) or high_water_mark < 1:
            raise ConfigError(f"high_water_mark must be a positive int, not {high_water_mark!r}")
        # Left at its default, a message may grow while the server keeps up (when
        # defaults.burst_message says so), to what the server may then hold for this
        # stream: a few budgets' worth at most.
        burst = max_message or 0
        if max_message is None:
            max_message = MAX_MESSAGE
            burst = min(defaults.burst_message or 0, 4 * high_water_mark)
        if not isinstance(max_message, int) or max_message < 1:
            raise ConfigError(f"max_message must be a positive int, not {max_message!r}")
        if content_length is not None and content_length < 0:
            raise ConfigError(f"content_length must be >= 0, not {content_length}")
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.charset = charset
        self.background = background
        self.high_water_mark = high_water_mark
        self.guard: GuardFactory | None = defaults.guard if guard is _UNSET else guard
        self.admission: Admission | None = defaults.admission if admission is _UNSET else admission
        self.max_message = min(max_message, high_water_mark)
        self.burst_message = max(self.max_message, burst)
        self.on_error = check_policy(on_error)
        self.ledger: Ledger | None = defaults.ledger if ledger is _UNSET else ledger
        # Hashing costs CPU on every byte: on when someone will read the result.
        self.digest = digest if digest is not None else self.ledger is not None
        self.source: Source = (
            content  # type: ignore[assignment]
            if _is_source(content)
            else as_source(content, charset=charset)  # type: ignore[arg-type]
        )
        if content_length is not None:
            self.source.size = content_length
        self.init_headers(headers)
        #: This response's counters; live while it streams.
        self.metrics: StreamMetrics | None = None
        self._digester: Digester | None = None
        self._error: BaseException | None = None

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        """Build ``raw_headers``; ``Content-Length`` is decided at the commit."""
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        if b"content-type" not in {k for k, _ in raw} and self.media_type is not None:
            content_type = self.media_type
            if content_type.startswith("text/") and "charset=" not in content_type.lower():
                content_type += "; charset=" + self.charset
            raw.append((b"content-type", content_type.encode("latin-1")))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the response as an ASGI application."""
        if scope["type"] != "http":
            raise ConfigError(f"StreamResponse serves HTTP, not {scope['type']!r}")
        # A layer that undoes what this response does (BaseHTTPMiddleware) is told once.
        caveats.check(scope, send)
        source = self.source
        channel = source.channel if isinstance(source, ChannelSource) else None
        if channel is None:
            channel = Channel(self.high_water_mark, "wait")
        metrics = self.metrics = REGISTRY.open(scope.get("path", ""), scope.get("method", ""))
        producer = Producer(source, channel, metrics)
        state = TransferState.FAILED
        ticket: AdmissionTicket | None = None
        try:
            admitted = self.admission.admit(scope) if self.admission is not None else None
            if isinstance(admitted, Refusal):
                REGISTRY.committed(metrics, 503)
                await send_problem(
                    send,
                    503,
                    "Service Unavailable",
                    admitted.reason,
                    headers={"retry-after": str(max(1, round(admitted.retry_after)))},
                )
                return
            ticket = admitted
            # A duck check, not isinstance(ticket, WatchingTicket): isinstance against a
            # runtime-checkable protocol cost 13 µs per response, ticket or not.
            watch = getattr(ticket, "watch", None)
            if watch is not None:
                watch(metrics)
            if scope.get("method") == "HEAD":
                await self._send_start(send, source.size)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                state = TransferState.COMPLETED
            else:
                transfer = await self._begin_transfer(scope, source.size)
                gated = self._end_gate(transfer, send)
                try:
                    state = await self._stream(
                        scope, receive, gated or send, source, channel, producer, problem=send
                    )
                finally:
                    if gated is None or not gated.sealed:
                        await self._finish_transfer(transfer, state, metrics.bytes_sent)
        finally:
            await producer.stop()
            REGISTRY.close(metrics, state)
            if ticket is not None:
                ticket.release()
        if self.background is not None:
            await self.background()

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        source: Source,
        channel: Channel,
        producer: Producer,
        *,
        problem: Send,
    ) -> TransferState:
        digester = Digester() if self.digest else None
        trailers = digester is not None and _trailers_wanted(scope)
        if digester is not None and isinstance(source, BytesSource) and source.data is not None:
            # Known up front: a header, no trailer needed.
            self.raw_headers.append((b"repr-digest", digest_of(source.data).encode()))
            trailers = False

        async def start(size: int | None) -> None:
            await self._send_start(send, size, trailers=trailers)

        assert self.metrics is not None
        pump = Pump(
            channel,
            start,
            send,
            self.metrics,
            size=source.size,
            max_message=self.max_message,
            burst_message=self.burst_message,
            guard=self.guard.new(time.monotonic()) if self.guard is not None else None,
            digester=digester,
        )
        self._digester = digester
        # The pump's task runs in this context, and sends stepped for it by a publisher
        # (Channel.deliver) run in the very same one: a send wrapper that sets and
        # resets a context variable sees one context, whichever task steps it.
        context = contextvars.copy_context()
        if defaults.direct_delivery:
            pump.context = context
        if isinstance(source, AsyncIterSource):
            # The common case runs the producer inside the pump: see pump.py.
            work = pump.run_iterator(source.iterator(), self.charset)
        else:
            producer.start()
            work = pump.run_channel()
        task = asyncio.create_task(work, name="sluicegate-pump", context=context)
        watcher = asyncio.create_task(_watch(receive, pump, task), name="sluicegate-watch")
        try:
            await task
            await _send_trailers(send, digester if trailers else None)
            return TransferState.COMPLETED
        except StreamTimedOut as exc:
            # Cut like a failure, but quietly: no traceback for a routine event.
            # Returning without the last message makes the server close the
            # connection without the terminating chunk.
            logger.info("cut a slow reader of %s: %s", scope.get("path"), exc)
            return TransferState.TIMED_OUT
        except (asyncio.CancelledError, ClientDisconnected):
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves (server shutdown)
            return TransferState.CLIENT_GONE
        except Exception as exc:
            self._error = exc
            return await self._failed(exc, scope, send, pump, problem=problem, trailers=trailers)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _failed(
        self,
        exc: Exception,
        scope: Scope,
        send: Send,
        pump: Pump,
        *,
        problem: Send,
        trailers: bool,
    ) -> TransferState:
        """The producer (or a send) failed: make it visible, as far as the head allows.

        Before the head: a 500 problem. After it: an in-band ending where the response
        has one (what was made before it goes first), otherwise an incomplete body
        (re-raised, so that the server closes the connection without the last chunk).
        """
        digester = pump.digester if trailers else None
        if pump.started:
            last = final_chunk(self.on_error, self.media_type, exc, self.charset)
            if last is not None:
                logger.warning("producer of %s failed; ended in band: %r", scope.get("path"), exc)
                # What was made before the failure, then the error record: all of it
                # counted in the digest, which the trailer then reports.
                while (chunk := pump.channel.take(self.max_message)) is not None:
                    await _send_counted(pump, chunk, True)
                await _send_counted(pump, last, False)
                await _send_trailers(send, digester)
                return TransferState.FAILED
            if isinstance(exc, MemoryError):
                # Out of memory is load, not a bug: one line, not a traceback per
                # request (formatting one allocates too). Returning without the last
                # message closes the connection without the terminating chunk, as
                # re-raising would.
                logger.error(
                    "out of memory producing %s; aborted after %d bytes",
                    scope.get("path"),
                    pump.metrics.bytes_sent,
                )
                return TransferState.FAILED
            # After the commit the only honest signal left is an incomplete body:
            # re-raising makes the server close the connection without the last chunk.
            exc.add_note(f"sluicegate: response aborted after {pump.metrics.bytes_sent} bytes")
            raise exc
        if isinstance(exc, MemoryError):
            logger.error("out of memory before the first chunk of %s", scope.get("path"))
        else:
            logger.error(
                "producer failed before the first chunk of %s", scope.get("path"), exc_info=exc
            )
        REGISTRY.committed(pump.metrics, 500)
        await send_problem(
            problem,  # past the end gate: this body is not the transfer's
            500,
            "Internal Server Error",
            "the response failed before any of it was sent",
            error=type(exc).__name__,
        )
        return TransferState.FAILED

    async def _send_start(self, send: Send, size: int | None, *, trailers: bool = False) -> None:
        headers = self.raw_headers
        sized = size is not None and self.status_code not in (204, 304) and self.status_code >= 200
        if sized and not any(k == b"content-length" for k, _ in headers):
            headers = [*headers, (b"content-length", str(size).encode())]
        message: dict[str, Any] = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": headers,
        }
        if trailers:
            message["headers"] = [*headers, (b"trailer", b"repr-digest")]
            message["trailers"] = True
        await send(message)
        if self.metrics is not None:
            REGISTRY.committed(self.metrics, self.status_code)

    async def _begin_transfer(self, scope: Scope, size: int | None) -> str | None:
        """Open the ledger record and add its headers; None without a ledger."""
        ledger = self.ledger
        if ledger is None:
            return None
        try:
            transfer = await ledger.begin(
                scope.get("method", "GET"), scope.get("path", ""), size=size
            )
        except Exception:
            # The ledger is a witness, not a gate: a download must not fail for it.
            logger.exception(
                "transfer ledger unavailable; streaming %s unrecorded", scope.get("path")
            )
            return None
        metrics = self.metrics
        if metrics is not None:
            # Read by the ledger when it writes progress (a long transfer, once a
            # progress interval): nothing per chunk, and a short one is never read.
            ledger.follow(transfer, lambda: metrics.bytes_sent)
        link = f'<{defaults.ledger_path.rstrip("/")}/{transfer}>; rel="transfer-status"'
        self.raw_headers += [(b"transfer-id", transfer.encode()), (b"link", link.encode())]
        return transfer

    def _end_gate(self, transfer: str | None, send: Send) -> EndGate | None:
        """A ``send`` that holds the body's end until the ledger committed its record."""
        ledger = self.ledger
        if transfer is None or ledger is None or not ledger.commit_before_end:
            return None

        async def seal(sent: int) -> None:
            # Every byte (or an in-band error record) is about to leave.
            state = TransferState.COMPLETED if self._error is None else TransferState.FAILED
            await self._finish_transfer(transfer, state, sent)

        return EndGate(send, seal)

    async def _finish_transfer(self, transfer: str | None, state: TransferState, sent: int) -> None:
        if transfer is None or self.ledger is None:
            return
        digester = self._digester
        try:
            await self.ledger.finish(
                transfer,
                state.value,  # the ledger's states: a Literal of the same values
                sent,
                digest=digester.value() if digester is not None else None,
                error=self._error,
            )
        except Exception:
            logger.exception("could not record the end of transfer %s", transfer)


async def _watch(receive: Receive, pump: Pump, task: asyncio.Task[None]) -> None:
    """Wait for the client to leave; then stop the pump and fail the channel."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
    if pump.finished or task.done():
        return  # the response was complete; servers say "disconnect" after that
    channel = pump.channel
    # Failing the channel stops a producer thread at its next put; cancelling the
    # pump stops the iterator and the sends now, not when they next look.
    channel.close(ClientDisconnected("the client went away"))
    task.cancel()


async def _send_counted(pump: Pump, chunk: Bytes, more: bool) -> None:
    """Send outside the pump's loop, still hashed and counted."""
    if pump.digester is not None:
        pump.digester.update(chunk)
    await pump.send_body(chunk, more)
    pump.metrics.bytes_sent += chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


async def _send_trailers(send: Send, digester: Digester | None) -> None:
    """Send the ``Repr-Digest`` trailer announced at the start (when there is one)."""
    if digester is not None:
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"repr-digest", digester.value().encode())],
                "more_trailers": False,
            }
        )


def _trailers_wanted(scope: Scope) -> bool:
    """The server can send trailers and the client said it reads them (``TE: trailers``)."""
    if "http.response.trailers" not in (scope.get("extensions") or {}):
        return False
    for name, value in scope.get("headers", []):
        if name.lower() == b"te" and b"trailers" in value.lower():
            return True
    return False


def _is_source(obj: Any) -> bool:
    return (
        hasattr(obj, "run")
        and hasattr(obj, "aclose")
        and hasattr(obj, "size")
        and not isinstance(obj, Channel)
    )
