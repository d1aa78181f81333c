"""A byte-budgeted buffer between a producer and the pump, with a policy at the limit.

:class:`Channel` is for producers that cannot be pulled: callbacks, threads, queues,
live feeds. It is also the one buffer the pump itself uses for every source, so all
bytes sluicegate holds for a stream live in exactly one place and are counted there.

What happens when the buffer is full is the channel's *policy*:

``wait``
    The producer waits for room: backpressure. ``await put()`` suspends;
    :meth:`Channel.put_threadsafe` blocks the calling thread.
``drop_oldest`` / ``drop_newest``
    The leaky stream: a slow client loses whole chunks (the oldest queued ones, or
    the one arriving), the producer never waits. Use it for live data where fresh
    beats complete.
``error``
    :class:`~sluicegate.errors.ChannelFull` is raised to the producer.

A chunk is never split by a drop: a chunk that has started to leave is always
finished, so message framing (an SSE event, an NDJSON line) survives leaking.

The queue, the budget and the policies are plain data in
:class:`~sluicegate.engine.buffer.ByteBuffer`; this module adds only the waiting:
a lock (``put_threadsafe`` may run on another thread), futures for tasks and a
condition for threads.

Example, a thread pushing readings into a response::

    channel = Channel(limit=256 * 1024, policy="drop_oldest")
    threading.Thread(target=lambda: [channel.put_threadsafe(r) for r in sensor()]).start()
    return StreamResponse(channel, media_type="application/x-ndjson")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeAlias

from sluicegate.engine.buffer import (
    FLUSH,
    POLICIES,
    ByteBuffer,
    Bytes,
    Chunk,
    Policy,
    Put,
    _Flush,
    nbytes,
    to_bytes,
)
from sluicegate.errors import ChannelClosed, ChannelFull, ConfigError

__all__ = ["DEFAULT_LIMIT", "FLUSH", "POLICIES", "Bytes", "Channel", "Chunk", "Policy"]

DEFAULT_LIMIT: Final = 64 * 1024

#: What a parked consumer hands :meth:`Channel.wait_data`: it takes one chunk of
#: ``n`` bytes straight from :meth:`Channel.deliver` and returns True if it is done
#: with it, False if it took it over but must be woken to finish (or to fail).
Taker: TypeAlias = Callable[[Bytes, int], bool]


class Channel:
    """A FIFO of byte chunks whose total size is held to ``limit`` by ``policy``.

    Bytes stay counted in :attr:`buffered` from :meth:`put` until the consumer
    :meth:`release`\\ s them, i.e. until the server has accepted them, so the budget
    covers the message in flight too.

    Counters: :attr:`bytes_in`, :attr:`bytes_out`, :attr:`drops`, :attr:`dropped_bytes`.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, policy: Policy = "wait") -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"channel limit must be a positive number of bytes, not {limit!r}")
        if policy not in POLICIES:
            raise ConfigError(
                f"channel policy must be one of {', '.join(POLICIES)}, not {policy!r}"
            )
        #: the queue, the budget and the counters (sans-IO)
        self.buffer = ByteBuffer(limit, policy)
        self.closed = False
        self.error: BaseException | None = None
        # A lock because put_threadsafe may run on another thread; uncontended, it is
        # cheaper than any attempt to avoid it.
        self._lock = threading.Lock()
        # Made by the first thread that has to wait for room: most channels are fed
        # from the loop and never need one (a live feed keeps thousands of channels).
        self._room: threading.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1
        # Threads blocked in put_threadsafe: notifying a Condition costs a microsecond
        # even when nobody waits, and release() runs once per message.
        self._thread_waiters = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._room_waiter: asyncio.Future[None] | None = None
        # Set while the consumer waits with nothing queued and can take a chunk
        # itself (see deliver); cleared whenever it is woken.
        self._taker: Taker | None = None

    # -- the buffer's numbers ---------------------------------------------------------

    @property
    def limit(self) -> int:
        """The byte budget."""
        return self.buffer.limit

    @property
    def policy(self) -> Policy:
        """What happens at the limit: see the module docstring."""
        return self.buffer.policy

    @property
    def buffered(self) -> int:
        """Bytes held: queued plus taken and not yet released."""
        return self.buffer.buffered

    @property
    def bytes_in(self) -> int:
        """Bytes accepted from the producer (after drops)."""
        return self.buffer.bytes_in

    @property
    def bytes_out(self) -> int:
        """Bytes taken by the consumer."""
        return self.buffer.bytes_out

    @property
    def drops(self) -> int:
        """Chunks a leaky policy dropped."""
        return self.buffer.drops

    @property
    def dropped_bytes(self) -> int:
        """Bytes a leaky policy dropped."""
        return self.buffer.dropped_bytes

    @property
    def queued(self) -> int:
        """Bytes waiting to be taken (those taken and in flight not counted)."""
        return self.buffer.queued

    @property
    def has_queued(self) -> bool:
        """Whether bytes wait to be taken."""
        return self.buffer.has_queued

    @property
    def exhausted(self) -> bool:
        """Closed with nothing left to take."""
        return self.closed and self.buffer.empty

    # -- producer side ------------------------------------------------------------

    @property
    def has_room(self) -> bool:
        """Whether a ``wait`` producer may put now without waiting."""
        return self.buffer.has_room

    async def put(self, chunk: Bytes) -> None:
        """Add a chunk, applying the policy; with ``wait``, suspend until there is room."""
        if self.buffer.policy == "wait":
            while not self.buffer.has_room and not self.closed:
                await self.wait_room()
        self.put_nowait(chunk)

    def put_nowait(self, chunk: Bytes | _Flush) -> bool:
        """Add a chunk without waiting; return whether there is room for more.

        With ``wait`` the chunk is always accepted (the budget may be overshot by this
        one chunk: the producer already made it); that is Node's ``push()``.
        """
        with self._lock:
            self._put_locked(chunk)
            return self.buffer.has_room

    def deliver(self, chunk: bytes) -> int:
        """Put ``chunk`` from the event loop's thread, handing it straight to a waiting
        consumer when it can take it; return how many queued chunks the policy dropped
        to make room for it (0 when it went straight out).

        For live feeds: a broadcast calls this once per event per subscriber. When the
        subscriber's pump waits with nothing queued (:meth:`wait_data` with a taker),
        the event is sent to the server right here, in the publisher's turn of the
        loop, instead of being queued and the pump's task woken: no task switch per
        subscriber. Otherwise (something queued, the pump busy) it is
        :meth:`put_nowait`.

        Only from the loop's thread, and only ``bytes``: the taker runs the server's
        ``send`` synchronously.
        """
        taker = self._taker
        buffer = self.buffer
        if (
            taker is not None
            and not buffer.buffered
            and buffer.empty
            # A consumer cancelled in its wait (its waiter cancelled) takes no more.
            and (waiter := self._data_waiter) is not None
            and not waiter.done()
        ):
            # Unset while it runs: a send that delivers to this channel again (a
            # middleware publishing, say) must queue, not re-enter the send.
            self._taker = None
            if taker(chunk, len(chunk)):
                if self._data_waiter is not None:
                    self._taker = taker
                return 0
            # Taken over, to be finished (or failed) by the consumer: wake it.
            with self._lock:
                self._wake_locked()
            return 0
        drops = buffer.drops
        self.put_nowait(chunk)
        return buffer.drops - drops

    async def fill(self, chunks: AsyncIterator[Any], charset: str = "utf-8") -> None:
        """Put everything ``chunks`` yields, waiting for room before each next pull."""
        async for chunk in chunks:
            self.put_nowait(to_bytes(chunk, charset))
            if not self.buffer.has_room:
                # Drop our reference: a 20 MB chunk must not stay alive while the
                # producer waits to make the next one.
                chunk = None
                await self.wait_room()
                if self.closed:
                    return

    def put_threadsafe(self, chunk: Bytes, timeout: float | None = None) -> None:
        """Add a chunk from a thread that is not the event loop's.

        With ``wait`` this blocks the calling thread until there is room (or ``timeout``
        seconds pass: :class:`ChannelFull`).
        """
        buffer = self.buffer
        with self._lock:
            if buffer.policy == "wait" and not self.closed and not buffer.has_room:
                if self._room is None:
                    self._room = threading.Condition(self._lock)
                self._thread_waiters += 1
                try:
                    has_room = self._room.wait_for(lambda: self.closed or buffer.has_room, timeout)
                finally:
                    self._thread_waiters -= 1
                if not has_room:
                    raise ChannelFull(f"no room in the channel after {timeout} s")
            self._put_locked(chunk)

    def flush(self) -> None:
        """End the current message: see :data:`FLUSH`."""
        self.put_nowait(FLUSH)

    def close(self, error: BaseException | None = None) -> None:
        """End the stream; with ``error``, the consumer fails with it after what is queued.

        Safe to call from any thread, and more than once (the first call wins).
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.error = error
            if self._room is not None:
                self._room.notify_all()
            self._wake_locked()
            # A producer awaiting room must learn that there will never be any.
            waiter = self._room_waiter
            if waiter is not None:
                self._room_waiter = None
                if threading.get_ident() == self._loop_thread:
                    if not waiter.done():
                        waiter.set_result(None)
                elif self._loop is not None:
                    self._loop.call_soon_threadsafe(_resolve, waiter)

    def _put_locked(self, chunk: Bytes | _Flush) -> None:
        if self.closed:
            raise ChannelClosed("the stream has ended; nothing more can be written")
        if isinstance(chunk, _Flush):
            self.buffer.mark()
        else:
            if type(chunk) is memoryview and (chunk.format != "B" or chunk.ndim != 1):
                # Slices are taken by byte offset; a view of int32s would slice items.
                chunk = chunk.cast("B")
            outcome = self.buffer.put(chunk)
            if outcome is Put.REFUSED:
                buffer = self.buffer
                raise ChannelFull(
                    f"channel holds {buffer.buffered} bytes; {nbytes(chunk)} more exceed "
                    f"its limit {buffer.limit}"
                )
            if outcome is Put.DROPPED:
                return
        self._wake_locked()

    def _wake_locked(self) -> None:
        self._taker = None
        waiter = self._data_waiter
        if waiter is not None:
            self._data_waiter = None
            loop = self._loop
            assert loop is not None
            if threading.get_ident() == self._loop_thread:
                # call_soon_threadsafe would write to the loop's wake-up pipe: a
                # syscall we need only when the producer is another thread.
                if not waiter.done():
                    waiter.set_result(None)
            else:
                loop.call_soon_threadsafe(_resolve, waiter)

    # -- consumer side ------------------------------------------------------------

    def attach(self) -> asyncio.AbstractEventLoop:
        """Bind the channel to the running loop (its consumer's); return the loop."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        return loop

    async def wait_room(self) -> None:
        """Suspend until :attr:`buffered` is under the limit or the channel is closed."""
        loop = self.attach()
        with self._lock:
            if self.buffer.has_room or self.closed:
                return
            waiter = self._room_waiter
            if waiter is None or waiter.done():
                waiter = self._room_waiter = loop.create_future()
        await waiter

    def take(self, max_bytes: int) -> Bytes | None:
        """Remove and return up to ``max_bytes`` ready bytes, or None if nothing is queued.

        Small chunks are joined into one; a chunk larger than ``max_bytes`` is handed out
        as zero-copy ``memoryview`` slices. A :data:`FLUSH` ends the message. The bytes
        stay in :attr:`buffered` until :meth:`release`.
        """
        with self._lock:
            return self.buffer.take(max_bytes)

    def release(self, n: int) -> None:
        """Give back the budget of ``n`` taken bytes: the server has accepted them."""
        with self._lock:
            buffer = self.buffer
            buffer.release(n)
            if buffer.has_room:
                if self._thread_waiters:
                    assert self._room is not None
                    self._room.notify_all()
                waiter = self._room_waiter
                if waiter is not None:
                    self._room_waiter = None
                    if not waiter.done():
                        waiter.set_result(None)

    async def wait_data(self, taker: Taker | None = None) -> None:
        """Suspend until something is queued or the channel is closed.

        With ``taker``, :meth:`deliver` may hand it chunks meanwhile instead of
        queuing them; when it returns False for one, this returns.
        """
        loop = self._loop or self.attach()
        with self._lock:
            if not self.buffer.empty or self.closed:
                return
            waiter = self._data_waiter = loop.create_future()
            self._taker = taker
        try:
            await waiter
        finally:
            self._taker = None

    async def __aiter__(self) -> AsyncIterator[Bytes]:
        """Read chunks as they come (for consumers other than the pump)."""
        while True:
            chunk = self.take(self.limit)
            if chunk is None:
                if self.closed:
                    if self.error is not None:
                        raise self.error
                    return
                await self.wait_data()
                continue
            self.release(nbytes(chunk))
            yield chunk

    def __repr__(self) -> str:
        return (
            f"<Channel {self.policy} {self.buffered}/{self.limit} B"
            f"{' closed' if self.closed else ''}>"
        )


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
