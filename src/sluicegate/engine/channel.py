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

Example, a thread pushing readings into a response::

    channel = Channel(limit=256 * 1024, policy="drop_oldest")
    threading.Thread(target=lambda: [channel.put_threadsafe(r) for r in sensor()]).start()
    return StreamResponse(channel, media_type="application/x-ndjson")
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Literal, TypeAlias

from sluicegate.errors import ChannelClosed, ChannelFull, ConfigError

#: What a producer may hand over. ``str`` is encoded with the response charset.
Chunk: TypeAlias = bytes | bytearray | memoryview | str
#: What a channel holds: bytes-like only.
Bytes: TypeAlias = bytes | bytearray | memoryview

Policy: TypeAlias = Literal["wait", "drop_oldest", "drop_newest", "error"]
POLICIES: Final = ("wait", "drop_oldest", "drop_newest", "error")

DEFAULT_LIMIT: Final = 64 * 1024

# Chunks under _SMALL bytes are coalesced at the tail into runs of about _COALESCE.
_SMALL: Final = 2048
_COALESCE: Final = 32 * 1024


class _Flush:
    """Marker type of :data:`FLUSH`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FLUSH"


#: Yield (or :meth:`Channel.flush`) this to end the current message: what came before
#: goes out without being coalesced with what comes after. For event-per-message
#: formats such as server-sent events.
FLUSH: Final = _Flush()


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
        self.limit = limit
        self.policy: Policy = policy
        self._queue: deque[Bytes | _Flush] = deque()
        # queued + taken-but-not-released: what the budget counts
        self.buffered = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops = 0
        self.dropped_bytes = 0
        self.closed = False
        self.error: BaseException | None = None
        # A lock because put_threadsafe may run on another thread; uncontended, it is
        # cheaper than any attempt to avoid it.
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1
        self._head_partial = False
        # Small chunks are copied into this bytearray at the queue's tail instead of
        # queued one by one: one memcpy per row instead of a Python-level loop over
        # thousands of tiny items when the message is assembled.
        self._tail: bytearray | None = None
        self._turn_pending = False
        self._turned = False
        # Threads blocked in put_threadsafe: notifying a Condition costs a microsecond
        # even when nobody waits, and release() runs once per message.
        self._thread_waiters = 0
        self._data_waiter: asyncio.Future[None] | None = None
        self._room_waiter: asyncio.Future[None] | None = None
        # Chunks taken by the consumer but not yet released, oldest first. Their
        # memory is alive until the server is done with them.
        self._taken = 0

    # -- producer side ------------------------------------------------------------

    @property
    def has_room(self) -> bool:
        """Whether a ``wait`` producer may put now without waiting."""
        return self.buffered < self.limit

    async def put(self, chunk: Bytes) -> None:
        """Add a chunk, applying the policy; with ``wait``, suspend until there is room."""
        if self.policy == "wait":
            while self.buffered >= self.limit and not self.closed:
                await self.wait_room()
        self.put_nowait(chunk)

    def put_nowait(self, chunk: Bytes | _Flush) -> bool:
        """Add a chunk without waiting; return whether there is room for more.

        With ``wait`` the chunk is always accepted (the budget may be overshot by this
        one chunk: the producer already made it); that is Node's ``push()``.
        """
        with self._lock:
            self._put_locked(chunk)
            return self.buffered < self.limit

    async def fill(
        self,
        chunks: AsyncIterator[Any],
        charset: str = "utf-8",
        *,
        when_full: Callable[[], Awaitable[None] | None] | None = None,
        on_turn: Callable[[], bool | None] | None = None,
        on_flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Put everything ``chunks`` yields, waiting for room before each next pull.

        The hot loop of every async stream, so it lives here, beside the state it
        touches: for ``bytes`` chunks it skips the lock (only this loop's thread
        touches a channel fed this way) and every call it can.

        ``when_full`` is called instead of :meth:`wait_room` when the budget is spent;
        what it returns, unless None, is awaited.
        ``on_turn`` is called at the next turn of the event loop after bytes were
        queued, that is once this task has let go: when the producer waits for
        something, what it made so far can leave. If it returns True (it started a
        sender), the next chunk is held for one turn so that it does not join them;
        if it returns None, it is called again at the next turn.
        ``on_flush`` is awaited after a :data:`FLUSH`: what came before may leave now.
        """
        loop = self._attach()
        queue = self._queue
        limit = self.limit
        fast = self.policy == "wait"
        wait: Callable[[], Awaitable[None] | None] = when_full or self.wait_room
        small, coalesce = _SMALL, _COALESCE
        async for chunk in chunks:
            if not self._turn_pending:  # the loop turned since the last chunk
                if self._turned:
                    # The producer waited, and a sender was started for what it had
                    # made before: let that go first, as it would had this chunk come
                    # later.
                    self._turned = False
                    await asyncio.sleep(0)
                if on_turn is not None:
                    self._turn_pending = True
                    loop.call_soon(self._turn, on_turn)
            if fast and type(chunk) is bytes:
                # Closed-ness is checked at the mark: until then the budget bounds
                # what a producer can add to a channel nobody reads any more.
                n = len(chunk)
                tail = self._tail
                if n >= small:
                    queue.append(chunk)
                    self._tail = None
                elif tail is not None and len(tail) < coalesce:
                    tail += chunk
                elif n:
                    self._tail = tail = bytearray(chunk)
                    queue.append(tail)
                self.buffered += n
                self.bytes_in += n
                if self._data_waiter is not None:
                    self._wake_locked()
            elif chunk is FLUSH:
                self.put_nowait(FLUSH)
                if on_flush is not None:
                    await on_flush()
            else:
                self.put_nowait(_encode(chunk, charset))
            if self.buffered >= limit:
                if self.closed:
                    raise self.error or ChannelClosed("the stream has ended")
                # Drop our reference: a 20 MB chunk must not stay alive while the
                # producer makes the next one.
                chunk = None
                pending = wait()
                if pending is not None:
                    await pending
                if self.closed:
                    return

    def _turn(self, callback: Callable[[], bool | None]) -> None:
        turned = callback()
        if turned is None:
            assert self._loop is not None
            self._loop.call_soon(self._turn, callback)
            return
        self._turn_pending = False
        self._turned = turned

    def put_threadsafe(self, chunk: Bytes, timeout: float | None = None) -> None:
        """Add a chunk from a thread that is not the event loop's.

        With ``wait`` this blocks the calling thread until there is room (or ``timeout``
        seconds pass: :class:`ChannelFull`).
        """
        with self._lock:
            full = self.policy == "wait" and not self.closed and self.buffered >= self.limit
            if full:
                self._thread_waiters += 1
                try:
                    has_room = self._room.wait_for(
                        lambda: self.closed or self.buffered < self.limit, timeout
                    )
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
        if type(chunk) is memoryview and (chunk.format != "B" or chunk.ndim != 1):
            # Slices are taken by byte offset; a view of int32s would slice items.
            chunk = chunk.cast("B")
        if chunk is FLUSH:
            self._queue.append(FLUSH)
            self._tail = None
            self._wake_locked()
            return
        assert not isinstance(chunk, _Flush)
        n = len(chunk) if type(chunk) is bytes else _nbytes(chunk)
        if n == 0:
            return
        if self.policy != "wait" and self.buffered + n > self.limit and self.buffered:
            if self.policy == "error":
                raise ChannelFull(
                    f"channel holds {self.buffered} bytes; {n} more exceed its limit {self.limit}"
                )
            if self.policy == "drop_newest" or not self._drop_oldest_for(n):
                self.drops += 1
                self.dropped_bytes += n
                return
        tail = self._tail
        if self.policy != "wait" or n >= _SMALL:
            # Leaky policies drop whole chunks, so each must stay its own item.
            self._queue.append(chunk)
            self._tail = None
        elif tail is not None and len(tail) < _COALESCE:
            tail += chunk
        else:
            self._tail = tail = bytearray(chunk)
            self._queue.append(tail)
        self.buffered += n
        self.bytes_in += n
        self._wake_locked()

    def _drop_oldest_for(self, n: int) -> bool:
        """Drop whole queued chunks, oldest first, until ``n`` more bytes fit.

        Returns False, dropping nothing, when even that cannot make room: only whole,
        untouched chunks may go; a partly sent head and the bytes in flight are the
        client's already.
        """
        q = self._queue
        head = q[0] if self._head_partial and q else None
        pinned = self._taken + (_nbytes(head) if isinstance(head, Bytes) else 0)
        if pinned + n > self.limit:
            return False
        keep = q.popleft() if self._head_partial and q else None
        while q and self.buffered + n > self.limit:
            old = q.popleft()
            if isinstance(old, _Flush):
                continue
            size = _nbytes(old)
            self.buffered -= size
            self.drops += 1
            self.dropped_bytes += size
        if keep is not None:
            q.appendleft(keep)
        return True

    def _wake_locked(self) -> None:
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

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        return loop

    async def wait_room(self) -> None:
        """Suspend until :attr:`buffered` is under the limit or the channel is closed."""
        loop = self._attach()
        with self._lock:
            if self.buffered < self.limit or self.closed:
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
            # Whatever is taken must not grow any more (nor be resized under a view).
            self._tail = None
            q = self._queue
            while q and q[0] is FLUSH:
                q.popleft()
            if not q:
                return None
            head = q[0]
            assert not isinstance(head, _Flush)
            size = len(head) if type(head) is bytes else _nbytes(head)
            if size > max_bytes:
                view = head if type(head) is memoryview else memoryview(head)
                q[0] = view[max_bytes:]
                self._head_partial = True
                out: Bytes = view[:max_bytes]
                size = max_bytes
            else:
                q.popleft()
                self._head_partial = False
                if q and q[0] is not FLUSH:
                    parts = [head]
                    while q:
                        nxt = q[0]
                        if nxt is FLUSH:
                            break
                        assert not isinstance(nxt, _Flush)
                        n = len(nxt) if type(nxt) is bytes else _nbytes(nxt)
                        if size + n > max_bytes:
                            break
                        parts.append(nxt)
                        size += n
                        q.popleft()
                    out = b"".join(parts) if len(parts) > 1 else head
                else:
                    out = head
            self._taken += size
            self.bytes_out += size
            return out

    def release(self, n: int) -> None:
        """Give back the budget of ``n`` taken bytes: the server has accepted them."""
        with self._lock:
            self._taken -= n
            self.buffered -= n
            if self.buffered < self.limit:
                if self._thread_waiters:
                    self._room.notify_all()
                waiter = self._room_waiter
                if waiter is not None:
                    self._room_waiter = None
                    if not waiter.done():
                        waiter.set_result(None)

    async def wait_data(self) -> None:
        """Suspend until something is queued or the channel is closed."""
        loop = self._attach()
        with self._lock:
            if self._queue or self.closed:
                return
            waiter = self._data_waiter = loop.create_future()
        await waiter

    @property
    def queued(self) -> int:
        """Bytes waiting to be taken (those taken and in flight not counted)."""
        return self.buffered - self._taken

    @property
    def has_queued(self) -> bool:
        """Whether bytes wait to be taken."""
        return self.buffered > self._taken

    @property
    def exhausted(self) -> bool:
        """Closed with nothing left to take."""
        return self.closed and not self._queue

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
            self.release(_nbytes(chunk))
            yield chunk

    def __repr__(self) -> str:
        return (
            f"<Channel {self.policy} {self.buffered}/{self.limit} B"
            f"{' closed' if self.closed else ''}>"
        )


def _encode(chunk: Any, charset: str) -> Bytes | _Flush:
    """Normalise one produced chunk: encode ``str``, flatten multi-byte memoryviews."""
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, str):
        return chunk.encode(charset)
    if isinstance(chunk, memoryview):
        # Slicing by byte offset needs a byte view; a view of int32s would slice items.
        return chunk if chunk.format == "B" and chunk.ndim == 1 else chunk.cast("B")
    if isinstance(chunk, bytes | bytearray | _Flush):
        return chunk
    raise TypeError(
        f"a response chunk must be bytes, bytearray, memoryview or str, not {type(chunk).__name__}"
    )


def _nbytes(chunk: Bytes) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
