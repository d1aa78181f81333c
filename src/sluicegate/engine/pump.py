"""The pump: the one loop that moves bytes from a producer to the server.

All bytes a stream holds are counted in one :class:`~sluicegate.engine.channel.Channel`
of ``high_water_mark`` bytes. They stay on its budget until the server's ``send()``
has accepted them, so the budget counts the message in flight too. A producer pulls
its next chunk only while the channel is under the mark, so at most one chunk exists
beyond it.

Two ways to drive it:

:meth:`Pump.run_iterator` (async iterables, the common case)
    The producer runs *in the pump's own task*. When the channel reaches the mark
    and nobody is sending, the pump sends right there, stepping ``send()`` by hand:
    if the server takes the message at once (a fast client), there is no task
    switch; a chunk that reaches the mark on its own does not even pass through the
    queue. When a ``send()`` would wait for the client, the rest of it moves to a
    *sender* task and the producer keeps reading ahead until the mark: producing and
    sending overlap. (A chunk sent past the queue fills the budget alone, so there is
    nothing to read ahead: its send is awaited in the producer's task, with no sender.)
    When the producer itself waits (for a database, a timer), what
    it made so far leaves at the next turn of the loop: a chunk is never held back
    waiting for more.

:meth:`Pump.run_channel` (threads, pull sources, push channels)
    Another task or thread fills the channel; the pump takes what is ready and
    sends it, waiting only when there is nothing to send.

After every message the server took at once, the loop turns once. Only then can the
server learn that the client left (servers on ASGI 2.3 keep returning from ``send()``
at once after that), and the disconnect cancels the producer before its next chunk.
It costs about a microsecond per message. In :meth:`Pump.run_channel`, when nothing is
queued after a message, waiting for the next one is that turn.

A pump that waits on its channel with nothing queued (:meth:`Pump.run_channel`, a live
feed between events) takes the next chunk straight from the producer's
:meth:`~sluicegate.engine.channel.Channel.deliver`: the send is stepped right there,
in the producer's turn of the loop, in the context the pump's task runs in. A
broadcast to N subscribers then costs N sends and no task switch; the pump's task
wakes only when a send has to wait for its client (it finishes it) or fails (it
raises). A client that left is noticed at the next turn of the loop, as before; a
publisher that publishes several events without awaiting in between sends each of
them to it first (they were made for everyone; nothing more is produced for it).

Whatever is queued when the pump sends goes out as one message: small chunks
coalesced, large ones cut into zero-copy ``memoryview`` slices, up to
``max_message`` bytes; where ``burst_message`` is set (``sluicegate serve`` sets
:data:`BURST_MESSAGE` for uvicorn), the size doubles up to it while the server takes
every message at once, and drops back at the first send that has to wait. It is off
by default: a server that queues messages rather than bytes (granian) would then
hold more of the stream (measured: 1.8 chunks of 4 MiB instead of 1.0).

Where the pump is lives in one :class:`PumpState`, changed only along
:data:`TRANSITIONS`.

The memory bound, per stream: the channel holds at most ``high_water_mark`` bytes
plus the producer's current chunk; the server holds what its transport buffers
(uvicorn: its 64 KiB write high-water mark plus the one message it accepted past it,
at most ``burst_message``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import time
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
)
from typing import Any, Final

from sluicegate.engine.buffer import Bytes, _Flush, nbytes, to_bytes
from sluicegate.engine.channel import Channel
from sluicegate.engine.metrics import REGISTRY, StreamMetrics
from sluicegate.engine.sources import ChannelSource, Source
from sluicegate.errors import (
    ChannelClosed,
    StreamError,
    StreamTimedOut,
    disconnected,
    send_errors,
)
from sluicegate.http.integrity import Digester
from sluicegate.interfaces import Send, SendGuard, StartResponse

__all__ = [
    "BURST_MESSAGE",
    "MAX_MESSAGE",
    "TRANSITIONS",
    "IllegalTransition",
    "Producer",
    "Pump",
    "PumpState",
    "Send",
    "SendGuard",
    "StartResponse",
    "next_message",
]

#: The most bytes put in one ``http.response.body`` message that may have to wait.
MAX_MESSAGE: Final = 64 * 1024
#: The most a message grows to while the server takes every message at once: fewer,
#: larger sends cost less per byte (a 1 MiB chunk leaves in 4 sends, not 16), and a
#: server that stops taking them at once holds one such message at most.
BURST_MESSAGE: Final = 256 * 1024


class Producer:
    """Runs a source into a channel in its own task, and always closes it."""

    def __init__(self, source: Source, channel: Channel, metrics: StreamMetrics) -> None:
        self.source = source
        self.channel = channel
        self.metrics = metrics
        self.task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start producing; idempotent."""
        if self.task is None and not isinstance(self.source, ChannelSource):
            # A channel's producer runs on its own and closes it when done.
            self.task = asyncio.create_task(self._run(), name="sluicegate-producer")

    async def _run(self) -> None:
        channel = self.channel
        try:
            await self.source.run(channel)
        except asyncio.CancelledError:
            channel.close()
            raise
        except BaseException as exc:
            channel.close(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            channel.close()
        finally:
            self._closing = True
            try:
                await self.source.aclose()
            finally:
                self._stopped()

    def _stopped(self) -> None:
        channel, metrics = self.channel, self.metrics
        metrics.bytes_produced = channel.bytes_in
        metrics.drops = channel.drops
        metrics.dropped_bytes = channel.dropped_bytes
        REGISTRY.producer_stopped(metrics)

    async def stop(self) -> None:
        """Cancel the producer and wait until the source is closed."""
        task = self.task
        if task is None:
            self.channel.close()
            try:
                await self.source.aclose()
            finally:
                self._stopped()
            return
        if not task.done() and not self._closing:
            # Still producing: stop it. Once it is closing its source, let it finish.
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_message(
    channel: Channel, max_message: int, wait: Callable[[], Awaitable[None]] | None = None
) -> Bytes | None:
    """Wait for the next message to send; None at the end; raise the producer's error.

    ``wait`` waits for the channel instead of :meth:`Channel.wait_data`.
    """
    while True:
        chunk = channel.take(max_message)
        if chunk is not None:
            return chunk
        if channel.closed:
            if channel.error is not None:
                raise channel.error
            return None
        await (channel.wait_data() if wait is None else wait())


class PumpState(enum.Enum):
    """Where one response's pump is. See :data:`TRANSITIONS` for the moves."""

    #: nothing sent yet; the producer runs
    IDLE = "idle"
    #: the head is out; messages go out in the producer's own task while the server
    #: takes them at once
    INLINE = "inline"
    #: a sender task sends (the client lags, or the producer let the loop turn with
    #: bytes queued); the producer reads ahead up to the budget
    HANDED_OVER = "handed_over"
    #: the producer ended: what is left goes out, then the end of the body
    ENDING = "ending"
    #: the last message (``more_body=False``) has gone
    COMPLETE = "complete"
    #: stopped short: the producer or the server failed, the client left, or the
    #: request was cancelled
    FAILED = "failed"


_S = PumpState
#: Every legal move of a pump, and nothing else. The one place that says what may
#: follow what; :meth:`Pump._to` enforces it.
TRANSITIONS: Final[Mapping[PumpState, frozenset[PumpState]]] = {
    _S.IDLE: frozenset({_S.INLINE, _S.HANDED_OVER, _S.ENDING, _S.FAILED}),
    _S.INLINE: frozenset({_S.HANDED_OVER, _S.ENDING, _S.FAILED}),
    _S.HANDED_OVER: frozenset({_S.INLINE, _S.ENDING, _S.FAILED}),
    _S.ENDING: frozenset({_S.COMPLETE, _S.FAILED}),
    _S.COMPLETE: frozenset(),
    _S.FAILED: frozenset(),
}
_TERMINAL: Final = frozenset({_S.COMPLETE, _S.FAILED})


class IllegalTransition(RuntimeError):
    """A pump was asked to move where :data:`TRANSITIONS` does not allow: a bug."""


class Pump:
    """Moves one response's bytes from its channel to the server's ``send``.

    ``start(size)`` sends the response head; it is called once, just before the first
    body message, with the body's size when known (``size``, or the whole body when
    the producer ended before anything was sent).

    Its life is :attr:`state`, a :class:`PumpState`; every change goes through
    :data:`TRANSITIONS`. The scheduling state (whether a turn of the event loop is
    awaited, and what it found) lives here too, beside the states it moves between.
    """

    def __init__(
        self,
        channel: Channel,
        start: StartResponse,
        send: Send,
        metrics: StreamMetrics,
        *,
        size: int | None = None,
        max_message: int = MAX_MESSAGE,
        burst_message: int | None = None,
        guard: SendGuard | None = None,
        digester: Digester | None = None,
    ) -> None:
        self.channel = channel
        # The plain data under the channel: the pump's own task may use it without
        # the channel's lock when nobody else can touch it (run_iterator).
        self._buffer = channel.buffer
        self.guard = guard
        #: hashes every message as it is handed to the server
        self.digester = digester
        self._start = start
        self._send = send
        self.metrics = metrics
        self.size = size
        self.max_message = max_message
        # The message size now: max_message, doubled after every send the server
        # took at once up to burst_message, back to max_message when one must wait.
        self._cap = max_message
        self._burst = max(max_message, burst_message or max_message)
        #: where the pump is; see :class:`PumpState`
        self.state = PumpState.IDLE
        self._sender: asyncio.Task[None] | None = None
        self._head: asyncio.Future[None] | None = None
        # Inside _pause(): a turn of the loop we asked for, not a producer waiting.
        self._pausing = False
        # A _turn callback is queued: bytes were queued since the loop last turned.
        self._turn_pending = False
        # The last _turn started a sender: the next chunk lets it go first.
        self._turned = False
        # Waiting in run_channel: a send taken over from Channel.deliver that must
        # wait for the client (the half-run send and its size), or the error a
        # delivered send raised; the pump's task finishes or raises it.
        self._parked: tuple[_Resume, int] | None = None
        self._parked_error: BaseException | None = None
        #: the context the pump's task runs in; with it, a pump that waits in
        #: run_channel takes chunks from Channel.deliver and steps their sends in it
        #: (None: it only waits; see Defaults.direct_delivery)
        self.context: contextvars.Context | None = None

    # -- state -------------------------------------------------------------------------

    def _to(self, new: PumpState) -> None:
        """Move to ``new``; raise :class:`IllegalTransition` if that is not a legal move."""
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"pump cannot go from {self.state.value} to {new.value}")
        self.state = new

    def _fail(self) -> None:
        """Stop short, unless the pump has already ended one way or the other."""
        if self.state not in _TERMINAL:
            self._to(PumpState.FAILED)

    @property
    def started(self) -> bool:
        """The head has gone out (or is going out)."""
        return self._head is not None

    @property
    def ended(self) -> bool:
        """The producer has ended (what is left may still be going out)."""
        return self.state is PumpState.ENDING or self.state is PumpState.COMPLETE

    @property
    def finished(self) -> bool:
        """The last body message (``more_body=False``) has been sent."""
        return self.state is PumpState.COMPLETE

    # -- driving ---------------------------------------------------------------------

    async def run_iterator(self, iterator: AsyncIterator[Any], charset: str) -> None:
        """Produce from ``iterator`` in this task and send, overlapping when the client lags."""
        channel = self.channel
        try:
            await self._produce(iterator, charset)
            if self.state is not PumpState.FAILED:
                self._to(PumpState.ENDING)
            # (Failed: the sender did, and _finish raises its error.)
            await self._finish()
        except ChannelClosed:
            self._fail()
            # The sender failed and closed the channel: its error is the one to report.
            if channel.error is not None:
                raise channel.error from None
            raise
        except asyncio.CancelledError:
            self._fail()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._stop_sender()
            raise
        except BaseException:
            self._fail()
            raise
        finally:
            # The producer failed: let what it made before leave (an in-band ending
            # follows it, and an abort is no less honest for it), then collect the
            # sender's error, if any, without masking the producer's.
            with contextlib.suppress(Exception):
                await self._stop_sender(wait=True)

    async def run_channel(self) -> None:
        """Send what another producer puts in the channel, until it is closed."""
        try:
            await self._relay()
        except BaseException:
            self._fail()
            raise

    async def _relay(self) -> None:
        channel = self.channel
        cap = self.max_message
        chunk = await next_message(channel, cap)
        if channel.exhausted:
            self._to(PumpState.ENDING)
        await self._commit()
        while chunk is not None:
            more = not channel.exhausted or channel.error is not None
            if not more:
                if self.state is not PumpState.ENDING:
                    self._to(PumpState.ENDING)
                await self._send_message(chunk, False)
                return
            # Stepped by hand: a server that takes the message at once costs no
            # coroutine layers and no clock reads (the broadcast case: one small
            # message per event per subscriber).
            n = len(chunk) if type(chunk) is bytes else nbytes(chunk)
            blocked = self._step_send(chunk, n)
            chunk = None
            if blocked is None:
                channel.release(n)
                # What an idle stream holds now (budgets and the doctor read it).
                self.metrics.bytes_buffered = self._buffer.held
            else:
                await self._wait_for_client(blocked, n)
            if channel.has_queued:
                # A producer thread may keep the channel full: let the loop turn so
                # that a client that left is noticed before the next message.
                await self._pause()
                chunk = channel.take(cap)
            if chunk is None:
                # Waiting for data is the loop turn: one suspension per message, not
                # a turn and then a wait (nor a take that finds nothing first).
                chunk = await self._next_live(cap)
        if self.state is not PumpState.ENDING:
            self._to(PumpState.ENDING)
        await self.send_body(b"", False)
        self._to(PumpState.COMPLETE)

    def _next_live(self, cap: int) -> Awaitable[Bytes | None]:
        """:func:`next_message`, taking chunks from ``Channel.deliver`` while it waits.

        Returns the next queued message, or None at the end; raises the producer's
        error, or the error of a send stepped by :meth:`_take_delivered`.
        """
        return next_message(self.channel, cap, self._wait_live)

    async def _wait_live(self) -> None:
        """Wait for the channel, taking delivered chunks meanwhile; then finish the send
        one of them left half-run, or raise its error."""
        if self.context is None:
            await self.channel.wait_data()
            return
        try:
            await self.channel.wait_data(self._take_delivered)
        except BaseException:
            # Cancelled (the client left, the request ended) with a send half-run:
            # close it, so that its own cleanup runs, and give its bytes back.
            parked, self._parked = self._parked, None
            if parked is not None:
                parked[0].close()
                self.channel.release(parked[1])
            raise
        parked = self._parked
        if parked is not None:
            self._parked = None
            await self._wait_for_client(*parked)
        error = self._parked_error
        if error is not None:
            self._parked_error = None
            raise error

    def _take_delivered(self, chunk: Bytes, n: int) -> bool:
        """Send a chunk :meth:`Channel.deliver` hands over while the pump waits.

        Runs in the producer's task (a publisher, most often), so it never raises:
        True when the server took the chunk at once; False when the pump's task must
        finish the send (the client lags) or raise its error. Either way the chunk is
        the pump's now.
        """
        assert self.context is not None
        try:
            # Nothing else is held while it waits: the chunk is what the stream holds.
            blocked = self.context.run(self._step_send, chunk, n, n)
        except (Exception, asyncio.CancelledError) as exc:
            # The client left, a guard's verdict, a server bug: the pump's task raises
            # it; the publisher goes on to the others.
            if isinstance(exc, StreamTimedOut):
                self._buffer.passed(n)  # judged after the server took it
            self._parked_error = exc
            return False
        if blocked is None:
            self._buffer.passed(n)
            self.metrics.bytes_buffered = 0
            return True
        self._buffer.in_flight(n)  # counted until the pump's task has sent it
        self._parked = (blocked, n)
        return False

    # -- producing (run_iterator) ------------------------------------------------------

    async def _produce(self, chunks: AsyncIterator[Any], charset: str) -> None:
        """Put everything ``chunks`` yields, sending at the mark; the hot loop.

        A chunk that reaches the mark on its own while nothing is held and the head
        is out goes straight to the server (no queue, no lock); anything else is
        queued, and sent when the budget is spent (:meth:`_make_room`), when the
        producer lets the loop turn (:meth:`_turn`), or at a :data:`FLUSH`. Both hot
        paths stay in this loop: one call (the append) per row of a CSV export, one
        (the send) per chunk of a fast download.
        """
        channel = self.channel
        buffer = self._buffer
        loop = channel.attach()
        limit = buffer.limit
        append = buffer.append if buffer.policy == "wait" else _put_with_policy(channel)
        inline = PumpState.INLINE
        burst = self._burst
        async for chunk in chunks:
            if type(chunk) is bytes:
                n = len(chunk)
            else:
                chunk = to_bytes(chunk, charset)
                if isinstance(chunk, _Flush):
                    await self._flush()
                    continue
                n = nbytes(chunk)
            if n >= limit and n <= self._cap and not buffer.buffered and self.state is inline:
                # Straight out: the same message the queue would make of it. (Not a
                # method of its own: this runs once per chunk of a fast download.)
                if channel.closed:
                    raise channel.error or ChannelClosed("the stream has ended")
                blocked = self._step_send(chunk, n, n)
                # Drop our reference before the next chunk is made: a 20 MB chunk must
                # not stay alive meanwhile (the send holds it while it needs it).
                chunk = None
                if blocked is None:
                    buffer.bytes_out += n  # buffer.passed(n), inlined
                    if self._cap < burst:
                        self._grow()
                    # Nothing is queued: a plain turn of the loop (see _pause).
                    await _NEXT_TURN
                else:
                    await self._wait_straight(blocked, n)
                if channel.closed:
                    return
                continue
            if not self._turn_pending:
                # The loop turned since bytes were last queued.
                if self._turned:
                    # The producer waited, and a sender was started for what it had
                    # made before: let that go first, as it would had this chunk
                    # come later.
                    self._turned = False
                    await asyncio.sleep(0)
                self._turn_pending = True
                loop.call_soon(self._turn)
            if append(chunk, n) >= limit:
                chunk = None  # as above
                await self._make_room()
                if channel.closed:
                    return

    def _wait_straight(self, blocked: _Resume, n: int) -> Awaitable[None]:
        """A chunk sent past the queue must wait for the client: finish it right here.

        The chunk fills the budget alone, so there is nothing to read ahead while it
        waits: the rest of the send is awaited in the producer's own task, where a
        sender task would only add a task, its wake-ups and the hand-back. (On a core
        shared with curl, one 64 KiB message in 26 to 36 waits; handing each to a
        sender cost about 6 % more CPU per GB, measured.)
        """
        self._cap = self.max_message  # the client lags: messages shrink back
        self._buffer.in_flight(n)  # counted until the server has taken it
        return self._wait_for_client(blocked, n)

    def _turn(self) -> None:
        """The loop turned with bytes queued: the producer is waiting; let them leave."""
        if self._pausing:
            # Our own pause, not the producer waiting: look again at the next turn.
            if self._buffer.has_queued:
                asyncio.get_running_loop().call_soon(self._turn)
            else:
                self._turn_pending = False
            return
        self._turn_pending = False
        state = self.state
        if (state is PumpState.IDLE or state is PumpState.INLINE) and self._buffer.has_queued:
            self._hand_over(None, 0)
            self._turned = True

    def _make_room(self) -> Awaitable[None]:
        """The channel is at the mark: send now, or wait for the sender to catch up.

        The fast path sends one message inline and returns :meth:`_pause`, the
        cheapest await there is: one turn of the loop, no coroutine object.
        """
        channel, buffer = self.channel, self._buffer
        if channel.closed:
            raise channel.error or ChannelClosed("the stream has ended")
        if self.state is PumpState.INLINE:
            self._send_one()
            if self.state is PumpState.INLINE and buffer.queued < buffer.limit:
                return self._pause()
        return self._wait_for_room()

    async def _wait_for_room(self) -> None:
        channel, buffer = self.channel, self._buffer
        if self.state is PumpState.IDLE:
            await self._commit()
        while self.state is PumpState.INLINE and buffer.queued >= buffer.limit:
            self._send_one()
            if self.state is PumpState.INLINE:
                await self._pause()
        while self.state is PumpState.HANDED_OVER and not buffer.has_room:
            # The producer waits with everything it made held: say so now, not at the
            # next send (budgets read it while the client stalls).
            self._note_held()
            await channel.wait_room()
            if channel.closed:
                await self._stop_sender()  # raises the sender's error
                return

    @types.coroutine
    def _pause(self) -> Generator[None, None, None]:
        """Let the event loop turn once after a message the server took at once.

        Only a turn lets the server learn that the client left, and servers on ASGI
        2.3 return from ``send()`` at once after that: without it, a producer that
        never waits would run on for the rest of the body. Cancellation (the client
        left) lands here, before the next chunk is made.
        """
        self._pausing = True
        try:
            yield
        finally:
            self._pausing = False

    async def _flush(self) -> None:
        """The producer asked for what it made to leave now (``FLUSH``)."""
        if self.channel.closed:
            raise ChannelClosed("the stream has ended")
        self._buffer.mark()
        if self.state is PumpState.IDLE:
            await self._commit()
        while self.state is PumpState.INLINE and self._buffer.has_queued:
            self._send_one()
            if self.state is PumpState.INLINE:
                await self._pause()

    # -- sending inline ------------------------------------------------------------------

    def _send_one(self) -> None:
        """Send the next queued message inline, or hand it to a sender if it must wait."""
        buffer = self._buffer
        chunk = buffer.take(self._cap)
        if chunk is None:
            return
        n = len(chunk) if type(chunk) is bytes else nbytes(chunk)
        if self._send_at_once(chunk, n):
            buffer.release(n)
        # else: the bytes stay taken until the sender has finished sending them

    def _send_at_once(self, chunk: Bytes, n: int) -> bool:
        """Start sending ``chunk`` (``n`` bytes); True if the server took it at once.

        If the server must wait for the client, the rest of the send moves to a
        sender task. Queued messages take this path; a chunk sent straight out of
        :meth:`_produce` takes the same steps written out there.
        """
        blocked = self._step_send(chunk, n)
        if blocked is None:
            if self._cap < self._burst:
                self._grow()
            return True
        self._must_wait(blocked, n)
        return False

    def _grow(self) -> None:
        """The server took a message at once: the next may be twice as large."""
        self._cap = min(self._cap * 2, self._burst)

    def _must_wait(self, blocked: _Resume, n: int) -> None:
        """A send must wait for the client: messages shrink back, a sender finishes it."""
        self._cap = self.max_message
        self._hand_over(blocked, n)

    def _step_send(self, chunk: Bytes, n: int, held: int = 0) -> _Resume | None:
        """Start sending ``chunk`` (``n`` bytes); None if the server took it at once.

        Stepped by hand to learn that without a task switch. Otherwise the half-run
        send is returned, for :meth:`_wait_for_client` to finish (which then counts
        it); taken at once, it is counted and judged here. ``held``, when the caller
        knows it, is what the stream holds while this is sent (otherwise the buffer's
        :attr:`~ByteBuffer.held`, or the chunk itself when it was sent past the queue).
        """
        if self.digester is not None:
            self.digester.update(chunk)
        metrics = self.metrics
        # Held while it is sent: what the buffer keeps alive, or (sent past the
        # queue) the chunk itself.
        held = held or self._buffer.held or n
        if held > metrics.peak_buffered:
            metrics.peak_buffered = held
        metrics.bytes_buffered = held
        # ASGI promises an awaitable, not a coroutine: its iterator may have no
        # send() (granian), so it is advanced with next(). Its default tells a send
        # that finished at once without raising StopIteration (half the cost).
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        step = self._send(message).__await__()
        try:
            waiting_on = next(step, _AT_ONCE)
        except OSError as exc:  # ASGI 2.4: the client is gone (send_errors, inlined)
            raise disconnected(exc) from exc
        if waiting_on is _AT_ONCE:
            metrics.bytes_sent += n
            if self.guard is not None:
                self._judge(n, 0.0)
            return None
        return _Resume(step, waiting_on)

    # -- sending from a sender task ------------------------------------------------------

    def _hand_over(self, blocked: _Resume | None, n: int) -> None:
        """Let a sender task send from now on (after finishing ``blocked``, if any)."""
        self._to(PumpState.HANDED_OVER)
        self._sender = _sender_task(self._drain(blocked, n))

    async def _drain(self, blocked: _Resume | None = None, n: int = 0) -> None:
        """Finish a blocked send, then send whatever is queued, until nothing is."""
        channel, buffer = self.channel, self._buffer
        try:
            if blocked is not None:
                await self._wait_for_client(blocked, n)
            await self._commit()
            while (
                self.state is not PumpState.COMPLETE
                and (chunk := channel.take(self.max_message)) is not None
            ):
                last = self.state is PumpState.ENDING and not buffer.has_queued
                await self._send_message(chunk, not last)
        except BaseException as exc:
            # Wake a producer waiting for room: it must stop, with this error. This
            # task stays in _sender so that the pump collects its error. A cancelled
            # send is a failed one too: never let the rest pass for a whole body.
            error = exc if isinstance(exc, Exception) else StreamError("sending was cancelled")
            channel.close(error)
            self._fail()
            raise
        self._sender = None
        if self.state is PumpState.HANDED_OVER:
            self._to(PumpState.INLINE)

    async def _finish(self) -> None:
        """The producer ended: send what is left and the end of the body."""
        channel = self.channel
        while self._sender is not None:
            await self._stop_sender(wait=True)
        if channel.closed and channel.error is not None:
            raise channel.error
        await self._commit()
        while (
            self.state is not PumpState.COMPLETE and (chunk := channel.take(self._cap)) is not None
        ):
            await self._send_message(chunk, self._buffer.has_queued)
        if self.state is not PumpState.COMPLETE:
            await self.send_body(b"", False)
            self._to(PumpState.COMPLETE)

    async def _stop_sender(self, *, wait: bool = False) -> None:
        """Wait for (``wait``) or cancel the sender task; raise its error if it failed."""
        sender = self._sender
        if sender is None:
            return
        if not wait and not sender.done():
            sender.cancel()
        try:
            await sender
        except asyncio.CancelledError:
            if wait or not sender.cancelled():
                raise
        finally:
            if self._sender is sender:
                self._sender = None

    # -- shared ------------------------------------------------------------------------

    async def _commit(self) -> None:
        """Send the head once; whoever comes second waits until it has gone."""
        head = self._head
        if head is not None:
            if not head.done():
                await head
            return
        head = self._head = asyncio.get_running_loop().create_future()
        size = self.size
        if size is None and self.state is PumpState.ENDING and self.channel.error is None:
            # The whole body is already here: say how long it is.
            size = self._buffer.buffered
        try:
            await self._start(size)
        finally:
            head.set_result(None)
        if self.state is PumpState.IDLE:
            self._to(PumpState.INLINE)

    def _account(self, chunk: Bytes, held: int) -> None:
        """Hash ``chunk`` and record ``held``, the bytes held while it is being sent."""
        if self.digester is not None:
            self.digester.update(chunk)
        metrics = self.metrics
        if held > metrics.peak_buffered:
            metrics.peak_buffered = held
        metrics.bytes_buffered = held

    def _note_held(self) -> None:
        """Record what the stream holds now in its metrics."""
        held = self._buffer.held
        metrics = self.metrics
        if held > metrics.peak_buffered:
            metrics.peak_buffered = held
        metrics.bytes_buffered = held

    async def _send_message(self, chunk: Bytes, more: bool) -> None:
        n = len(chunk) if type(chunk) is bytes else nbytes(chunk)
        self._account(chunk, self._buffer.held)
        await self._wait_for_client(self.send_body(chunk, more), n)
        if not more:
            self._to(PumpState.COMPLETE)

    async def send_body(self, chunk: Bytes, more: bool) -> None:
        """Send one body message now (outside the budget: for endings)."""
        with send_errors:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def _wait_for_client(self, sending: Awaitable[None], n: int) -> None:
        """Await a send of ``n`` bytes, within the guard's deadline if there is one."""
        guard = self.guard
        t0 = time.monotonic()
        with send_errors:
            if guard is None:
                await sending
            else:
                try:
                    async with asyncio.timeout_at(_loop_time(guard.deadline(t0), t0)):
                        await sending
                except TimeoutError:
                    reason = guard.verdict(time.monotonic()) or "the client accepted nothing"
                    raise StreamTimedOut(reason) from None
        waited = time.monotonic() - t0
        self.metrics.blocked_seconds += waited
        self.channel.release(n)
        self.metrics.bytes_sent += n
        self._note_held()
        if guard is not None:
            self._judge(n, waited)

    def _judge(self, n: int, waited: float) -> None:
        guard = self.guard
        assert guard is not None
        now = time.monotonic()
        guard.accepted(now, n, waited)
        reason = guard.verdict(now)
        if reason is not None:
            raise StreamTimedOut(reason)


def _put_with_policy(channel: Channel) -> Callable[[Bytes, int], int]:
    """``ByteBuffer.append``'s shape for a channel with a leaky or failing policy."""

    def put(chunk: Bytes, n: int) -> int:
        channel.put_nowait(chunk)
        return channel.buffered

    return put


class _NextTurn:
    """``await _NEXT_TURN`` lets the event loop turn once: ``asyncio.sleep(0)``, cheaper.

    Awaiting it yields None once, a bare yield, so the task is rescheduled with
    ``call_soon`` behind everything that is ready and the loop polls for I/O before
    it runs again: a real turn. Its ``__await__`` is a C-level iterator over
    ``(None,)``, so no generator or Python frame is made per turn (about 90 ns less
    than a ``types.coroutine`` generator, measured with uvloop); the pump takes one
    after every message of a fast download.
    """

    __slots__ = ()
    # Not a function, so not bound: called with no arguments, it returns a fresh
    # iterator that yields None once.
    __await__ = functools.partial(iter, (None,))


_NEXT_TURN: Final = _NextTurn()


#: What ``next(step, ...)`` returns when a stepped send finished at once.
_AT_ONCE: Final = object()


def _sender_task(drain: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.create_task(drain, name="sluicegate-sender")
    # Its error reaches the pump through the channel it closes; the pump may be gone
    # (cancelled with the request) before it could await the task itself.
    task.add_done_callback(_consume_error)
    return task


def _consume_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _loop_time(deadline: float | None, now: float) -> float | None:
    """A ``time.monotonic()`` deadline in the event loop's clock."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - now)


class _Resume:
    """Await the rest of an awaitable that was already stepped once by hand.

    The pump starts ``send()`` without awaiting it, to learn whether the server takes
    the message at once; when it does not, this hands the half-run step to a task.
    """

    __slots__ = ("_first", "_step")

    def __init__(self, step: Iterator[Any], first: Any) -> None:
        self._step = step
        self._first = first

    def close(self) -> None:
        """Drop the half-run step unfinished, letting it clean up (``finally``,
        ``async with``) if it can."""
        close = getattr(self._step, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def __await__(self) -> Generator[Any, Any, Any]:
        step = self._step
        value = self._first
        # An awaitable's iterator need not be a generator: send() and throw() are
        # optional, as they are to ``await`` itself.
        send = getattr(step, "send", None)
        throw = getattr(step, "throw", None)
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation, mostly: pass it in
                if throw is None:
                    raise
                try:
                    value = throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = next(step) if sent is None or send is None else send(sent)
                except StopIteration as stop:
                    return stop.value
