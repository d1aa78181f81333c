"""The bytes one stream holds, as plain data: a queue under a byte budget.

:class:`ByteBuffer` is the sans-IO core of :class:`~sluicegate.engine.channel.Channel`:
it queues chunks, coalesces small ones, cuts large ones into zero-copy slices, applies
the drop policies and keeps the counters. Plain values in and out: no locks, no
futures, no clock. Who may touch it when, and who waits for what, is the business of
the layer above it (the channel, for threads and tasks; the pump, on its own task).

The budget counts a byte from :meth:`~ByteBuffer.append` until :meth:`~ByteBuffer.release`,
that is until the server has accepted it: :attr:`~ByteBuffer.buffered` covers the
queue *and* the message in flight.

>>> buf = ByteBuffer(limit=8)
>>> buf.append(b"abc", 3), buf.append(b"defgh", 5)
(3, 8)
>>> buf.has_room
False
>>> bytes(buf.take(100)), buf.queued, buf.buffered
(b'abcdefgh', 0, 8)
>>> buf.release(8); buf.buffered
0
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Final, Literal, TypeAlias

#: What a producer may hand over. ``str`` is encoded with the response charset.
Chunk: TypeAlias = bytes | bytearray | memoryview | str
#: What a buffer holds: bytes-like only.
Bytes: TypeAlias = bytes | bytearray | memoryview

Policy: TypeAlias = Literal["wait", "drop_oldest", "drop_newest", "error"]
POLICIES: Final = ("wait", "drop_oldest", "drop_newest", "error")

# Chunks under SMALL bytes are coalesced at the tail into runs of about COALESCE:
# one memcpy per row instead of a Python-level loop over thousands of tiny items
# when a message is assembled.
SMALL: Final = 2048
COALESCE: Final = 32 * 1024


class _Flush:
    """Marker type of :data:`FLUSH`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FLUSH"


#: Yield (or :meth:`Channel.flush`) this to end the current message: what came before
#: goes out without being coalesced with what comes after. For event-per-message
#: formats such as server-sent events.
FLUSH: Final = _Flush()


class Put(enum.Enum):
    """What :meth:`ByteBuffer.put` did with a chunk."""

    QUEUED = "queued"
    #: a leaky policy dropped this chunk (``drop_newest``, or no room to be made)
    DROPPED = "dropped"
    #: the ``error`` policy refused it: no room
    REFUSED = "refused"


def nbytes(chunk: Bytes) -> int:
    """Size in bytes of a bytes-like chunk (a memoryview's ``len`` counts items)."""
    return chunk.nbytes if type(chunk) is memoryview else len(chunk)


def to_bytes(chunk: Any, charset: str) -> Bytes | _Flush:
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


#: The tail when there is none; never appended to (see ByteBuffer._tail_stop).
_NO_TAIL: Final = bytearray()


class ByteBuffer:
    """A FIFO of byte chunks held to ``limit`` bytes by ``policy``.

    With ``wait`` every chunk is accepted (the producer is expected to stop putting
    once :attr:`has_room` is False, so the limit is overshot by one chunk at most);
    the leaky policies drop whole chunks; ``error`` refuses.

    Counters: :attr:`bytes_in`, :attr:`bytes_out`, :attr:`drops`, :attr:`dropped_bytes`.
    """

    __slots__ = (
        "_head_partial",
        "_queue",
        "_sliced",
        "_sliced_left",
        "_tail",
        "_tail_stop",
        "_turned_away",
        "buffered",
        "bytes_out",
        "dropped_bytes",
        "drops",
        "limit",
        "policy",
        "taken",
    )

    def __init__(self, limit: int, policy: Policy = "wait") -> None:
        self.limit = limit
        self.policy: Policy = policy
        self._queue: deque[Bytes | _Flush] = deque()
        # Small chunks are copied into this bytearray at the queue's tail while
        # buffered is under _tail_stop (the tail is then under COALESCE bytes):
        # one comparison per row, no len(). No tail: _NO_TAIL and -1.
        self._tail = _NO_TAIL
        self._tail_stop = -1
        # The queue's head is the rest of a chunk that started to leave.
        self._head_partial = False
        # A chunk handed out in slices stays alive whole until its last slice is
        # released: its size, and how much of it is still counted in buffered.
        self._sliced = 0
        self._sliced_left = 0
        #: bytes counted against the budget: queued plus taken and not released
        self.buffered = 0
        #: bytes taken and not yet released: the message in flight
        self.taken = 0
        self.bytes_out = 0
        self.drops = 0
        self.dropped_bytes = 0
        # Dropped on arrival, never queued: in dropped_bytes but not in bytes_in.
        self._turned_away = 0

    # -- in -------------------------------------------------------------------------

    @property
    def has_room(self) -> bool:
        """Whether a ``wait`` producer may put another chunk."""
        return self.buffered < self.limit

    def append(self, chunk: Bytes, n: int) -> int:
        """Queue ``chunk`` of ``n`` bytes whatever the budget says (the ``wait`` put).

        Small chunks join the tail; a chunk is never split here. Returns
        :attr:`buffered`. Called once per row of a CSV export: one counter to keep
        (:attr:`bytes_in` is derived), the empty chunk tested off the common path,
        no default arguments (a call with defaults costs more in CPython 3.11).
        """
        buffered = self.buffered
        if n < SMALL:
            if buffered < self._tail_stop:
                tail = self._tail
                tail += chunk
            elif n:
                self._tail = tail = bytearray(chunk)
                self._tail_stop = buffered + COALESCE
                self._queue.append(tail)
            else:
                return buffered
        else:
            self._queue.append(chunk)
            self._end_tail()
        self.buffered = buffered = buffered + n
        return buffered

    def _end_tail(self) -> None:
        """Nothing more joins the tail: it is taken, or something follows it."""
        self._tail = _NO_TAIL
        self._tail_stop = -1

    def put(self, chunk: Bytes) -> Put:
        """Queue ``chunk`` under the policy; see :class:`Put` for the outcomes."""
        if self.policy == "wait":
            self.append(chunk, nbytes(chunk))
            return Put.QUEUED
        n = nbytes(chunk)
        if not n:
            return Put.QUEUED
        if self.buffered and self.buffered + n > self.limit:
            if self.policy == "error":
                return Put.REFUSED
            if self.policy == "drop_newest" or not self._drop_oldest_for(n):
                self.drops += 1
                self.dropped_bytes += n
                self._turned_away += n
                return Put.DROPPED
        # Leaky policies drop whole chunks, so each must stay its own item.
        self._queue.append(chunk)
        self._end_tail()
        self.buffered += n
        return Put.QUEUED

    def mark(self) -> None:
        """End the current message (:data:`FLUSH`): what follows is not joined to it."""
        self._queue.append(FLUSH)
        self._end_tail()

    def passed(self, n: int) -> None:
        """Count ``n`` bytes that went to the server without being queued."""
        self.bytes_out += n  # and so bytes_in

    def in_flight(self, n: int) -> None:
        """Count ``n`` bytes being sent past the queue until :meth:`release`."""
        self.bytes_out += n
        self.buffered += n
        self.taken += n
        self._tail_stop += n  # the tail's bytes did not change

    def _drop_oldest_for(self, n: int) -> bool:
        """Drop whole queued chunks, oldest first, until ``n`` more bytes fit.

        Returns False, dropping nothing, when even that cannot make room: only whole,
        untouched chunks may go; a partly sent head and the bytes in flight are the
        client's already.
        """
        q = self._queue
        pinned = self.taken
        if self._head_partial and q:
            head = q[0]
            assert not isinstance(head, _Flush)
            pinned += nbytes(head)
        if pinned + n > self.limit:
            return False
        keep = q.popleft() if self._head_partial and q else None
        while q and self.buffered + n > self.limit:
            old = q.popleft()
            if isinstance(old, _Flush):
                continue
            size = nbytes(old)
            self.buffered -= size
            self._tail_stop -= size
            self.drops += 1
            self.dropped_bytes += size
        if keep is not None:
            q.appendleft(keep)
        return True

    @property
    def bytes_in(self) -> int:
        """Bytes put in so far: queued, sent past the queue, or dropped after queueing.

        Derived, not counted, so that :meth:`append` keeps one counter per row: every
        byte put is still queued, taken (:attr:`bytes_out`, which counts what is in
        flight too) or dropped from the queue.
        """
        return self.bytes_out + self.buffered - self.taken + self.dropped_bytes - self._turned_away

    # -- out ------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Bytes alive because of this buffer: :attr:`buffered`, plus what has left
        of a chunk that is being sent in slices (the slices still in the queue or in
        flight keep all of it alive)."""
        return self.buffered + self._sliced - self._sliced_left

    @property
    def queued(self) -> int:
        """Bytes waiting to be taken (those taken and in flight not counted)."""
        return self.buffered - self.taken

    @property
    def has_queued(self) -> bool:
        """Whether bytes wait to be taken."""
        return self.buffered > self.taken

    @property
    def empty(self) -> bool:
        """Nothing queued, not even a :data:`FLUSH` marker."""
        return not self._queue

    def take(self, max_bytes: int) -> Bytes | None:
        """Remove and return up to ``max_bytes`` queued bytes, or None if none are queued.

        Small chunks are joined into one; a chunk larger than ``max_bytes`` is handed
        out as zero-copy ``memoryview`` slices. A :data:`FLUSH` ends the message. The
        bytes stay in :attr:`buffered` until :meth:`release`.
        """
        # Whatever is taken must not grow any more (nor be resized under a view).
        self._end_tail()
        q = self._queue
        while q and q[0] is FLUSH:
            q.popleft()
        if not q:
            return None
        head = q[0]
        assert not isinstance(head, _Flush)
        size = len(head) if type(head) is bytes else nbytes(head)
        if size > max_bytes:
            if not self._head_partial:  # the first slice of this chunk
                self._sliced = self._sliced_left = size
            view = head if type(head) is memoryview else memoryview(head)
            q[0] = view[max_bytes:]
            self._head_partial = True
            out: Bytes = view[:max_bytes]
            size = max_bytes
        else:
            q.popleft()
            self._head_partial = False
            out = head
            if q and q[0] is not FLUSH:
                out, size = self._join(head, size, max_bytes)
        self.taken += size
        self.bytes_out += size
        return out

    def _join(self, head: Bytes, size: int, max_bytes: int) -> tuple[Bytes, int]:
        """Join whole chunks after ``head`` while they fit in ``max_bytes``."""
        q = self._queue
        parts = [head]
        while q:
            nxt = q[0]
            if isinstance(nxt, _Flush):
                break
            n = len(nxt) if type(nxt) is bytes else nbytes(nxt)
            if size + n > max_bytes:
                break
            parts.append(nxt)
            size += n
            q.popleft()
        return (b"".join(parts) if len(parts) > 1 else head), size

    def release(self, n: int) -> None:
        """Give back the budget of ``n`` taken bytes: the server has accepted them."""
        self.taken -= n
        self.buffered -= n
        self._tail_stop -= n  # the tail's bytes did not change
        if self._sliced:
            # Messages go out one at a time: this one was a slice of that chunk.
            self._sliced_left -= n
            if self._sliced_left <= 0:
                self._sliced = self._sliced_left = 0

    def __repr__(self) -> str:
        return f"<ByteBuffer {self.policy} {self.buffered}/{self.limit} B>"
