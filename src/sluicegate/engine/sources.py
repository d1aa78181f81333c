"""Adapt whatever produces the body into one shape the pump can drive.

Every producer becomes a :class:`Source`: ``run(channel)`` produces into the pump's
:class:`~sluicegate.engine.channel.Channel`, waiting for room *before* it makes each chunk,
so at most one chunk exists beyond the byte budget; ``aclose()`` releases it, whether
it finished, failed or was cancelled because the client left.

* async iterables: pulled in a task; ``aclose()`` closes async generators.
* sync iterables: pulled in a worker thread in batches that end when the budget is
  spent, so a slow client never pins a thread and there is no thread hop per item;
  generators are ``close()``\\ d in a thread.
* binary files: read in a worker thread in blocks of at most 256 KiB.
* ``bytes`` / ``str``: one chunk, size known.
* :class:`PullSource`: Node's ``Readable``: ``_read()`` is called only when the
  consumer wants more, and ``push()`` says whether it may push again.
* a :class:`~sluicegate.engine.channel.Channel`: a push producer owns it already.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import os
import stat
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator
from concurrent.futures import Future
from typing import IO, Any, TypeAlias

from sluicegate.engine.buffer import FLUSH, Bytes, Chunk, _Flush
from sluicegate.engine.buffer import to_bytes as _to_bytes
from sluicegate.engine.channel import Channel
from sluicegate.errors import ConfigError
from sluicegate.interfaces import Source

#: Largest read from a file: big enough for throughput, small enough to stay bounded.
MAX_FILE_READ = 256 * 1024

Content: TypeAlias = (
    bytes
    | bytearray
    | memoryview
    | str
    | AsyncIterable[Any]
    | Iterable[Any]
    | IO[bytes]
    | "PullSource"
    | Channel
)


def to_bytes(chunk: Chunk | _Flush, charset: str) -> Bytes | _Flush:
    """Normalise one produced chunk: encode ``str``, flatten multi-byte memoryviews."""
    return _to_bytes(chunk, charset)


class BytesSource:
    """A body that is already in memory."""

    def __init__(self, data: Bytes) -> None:
        self.data: Bytes | None = data
        self.size: int | None = len(memoryview(data).cast("B"))

    async def run(self, channel: Channel) -> None:
        if self.data is not None:
            channel.put_nowait(self.data)

    async def aclose(self) -> None:
        self.data = None


class AsyncIterSource:
    """An async iterable (an async generator, an ``aiofiles`` file, a DB cursor...)."""

    def __init__(self, iterable: AsyncIterable[Any], charset: str, size: int | None = None) -> None:
        self._iterable = iterable
        self._iterator: AsyncIterator[Any] | None = None
        self._charset = charset
        self.size = size

    def iterator(self) -> AsyncIterator[Any]:
        """The iterator to pull from; ``aclose()`` closes this one."""
        if self._iterator is None:
            self._iterator = aiter(self._iterable)
        return self._iterator

    async def run(self, channel: Channel) -> None:
        await channel.fill(self.iterator(), self._charset)

    async def aclose(self) -> None:
        it = self._iterator if self._iterator is not None else self._iterable
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()


class SyncIterSource:
    """A sync iterable, pulled in a worker thread in budget-sized batches."""

    def __init__(self, iterable: Iterable[Any], charset: str, size: int | None = None) -> None:
        self._iterable = iterable
        self._iterator: Iterator[Any] | None = None
        self._charset = charset
        self._stop = threading.Event()
        self._batch: Future[bool] | None = None
        self.size = size

    def _fill(self, channel: Channel) -> bool:
        """Pull items until the budget is spent; True when the iterator is exhausted."""
        it = self._iterator
        assert it is not None
        charset = self._charset
        put = channel.put_nowait
        stop = self._stop
        for chunk in it:
            if type(chunk) is not bytes:
                chunk = to_bytes(chunk, charset)
            if not put(chunk) or stop.is_set():
                return False
        return True

    async def run(self, channel: Channel) -> None:
        loop = asyncio.get_running_loop()
        self._iterator = iter(self._iterable)
        while not self._stop.is_set():
            await channel.wait_room()
            if channel.closed:
                return
            batch: Future[bool] = Future()
            self._batch = batch
            loop.run_in_executor(None, _run_into, batch, self._fill, channel)
            if await asyncio.wrap_future(batch):
                return

    async def aclose(self) -> None:
        self._stop.set()
        batch = self._batch
        if batch is not None and not batch.done():
            # The worker may be inside next(); a generator cannot be closed while it
            # runs, so let that one item finish first. Its outcome no longer matters.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(batch)
        close = getattr(self._iterator or self._iterable, "close", None)
        if close is not None:
            await asyncio.get_running_loop().run_in_executor(None, close)


def _run_into(fut: Future[bool], fn: Any, *args: Any) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn(*args))
    except BaseException as exc:
        fut.set_exception(exc)


class FileSource(SyncIterSource):
    """A binary file object, read in a worker thread in blocks of ``block_size``."""

    def __init__(self, file: IO[bytes], block_size: int = MAX_FILE_READ) -> None:
        if not 0 < block_size <= MAX_FILE_READ:
            raise ConfigError(f"block_size must be 1..{MAX_FILE_READ}, not {block_size}")
        self._file = file
        read = file.read
        super().__init__(iter(lambda: read(block_size), b""), "ascii", _remaining(file))

    async def aclose(self) -> None:
        await super().aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._file.close)


def _remaining(file: IO[bytes]) -> int | None:
    try:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - file.tell())
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


class PullSource:
    """Node's ``Readable``: subclass it and implement :meth:`_read`.

    ``_read(size)`` is called only when the consumer wants more. It pushes chunks
    with :meth:`push`, now or later (from a callback, another task); ``push`` returns
    False once the budget is spent, after which ``_read`` will be called again when
    there is room. ``push(None)`` (or :meth:`end`) ends the body.

    Example, the article's custom readable::

        class Chunks(PullSource):
            def __init__(self, total: int) -> None:
                super().__init__()
                self.left = total

            async def _read(self, size: int) -> None:
                while self.left:
                    self.left -= 1
                    if not self.push(await make_chunk()):
                        return
                self.push(None)
    """

    #: Length of the whole body when known up front; set it in ``__init__``.
    size: int | None = None

    def __init__(self, *, charset: str = "utf-8") -> None:
        self._channel: Channel | None = None
        self._charset = charset
        self._pushed = asyncio.Event()
        self._ended = False

    def _read(self, size: int) -> Awaitable[None] | None:
        """Produce up to about ``size`` bytes by calling :meth:`push`. Override this."""
        raise NotImplementedError

    def push(self, chunk: Chunk | None) -> bool:
        """Queue a chunk (None ends the body); return whether more may be pushed now."""
        channel = self._channel
        if channel is None:
            raise RuntimeError("push() called before the source was attached to a response")
        self._pushed.set()
        if chunk is None:
            self.end()
            return False
        return channel.put_nowait(to_bytes(chunk, self._charset))

    def end(self) -> None:
        """End the body after what was pushed."""
        self._ended = True
        self._pushed.set()

    def destroy(self) -> Awaitable[None] | None:
        """Release resources; called once when the stream ends for any reason. Override it."""
        return None

    async def run(self, channel: Channel) -> None:
        self._channel = channel
        while not self._ended and not channel.closed:
            await channel.wait_room()
            if channel.closed:
                return
            self._pushed.clear()
            result = self._read(channel.limit - channel.buffered)
            if inspect.isawaitable(result):
                await result
            if not self._pushed.is_set():
                # Nothing pushed yet: the data comes later, from a callback.
                await self._pushed.wait()

    async def aclose(self) -> None:
        result = self.destroy()
        if inspect.isawaitable(result):
            await result


class ChannelSource:
    """A :class:`Channel` a push producer writes to: the pump reads it directly."""

    def __init__(self, channel: Channel, size: int | None = None) -> None:
        self.channel = channel
        self.size = size

    async def run(self, channel: Channel) -> None:
        # Production happens elsewhere; the stream ends when the producer closes it.
        return None

    async def aclose(self) -> None:
        self.channel.close()


def as_source(content: Content, *, charset: str = "utf-8", size: int | None = None) -> Source:
    """Adapt ``content`` to a :class:`Source`; raise ``TypeError`` for what cannot stream."""
    if isinstance(content, str):
        return BytesSource(content.encode(charset))
    if isinstance(content, bytes | bytearray | memoryview):
        return BytesSource(content)
    if isinstance(content, Channel):
        return ChannelSource(content, size)
    if isinstance(content, PullSource):
        if size is not None:
            content.size = size
        return content
    if isinstance(content, io.IOBase) or (
        hasattr(content, "read") and hasattr(content, "close") and not isinstance(content, Iterable)
    ):
        if isinstance(content, io.TextIOBase):
            raise TypeError("open the file in binary mode ('rb') to stream it")
        source = FileSource(content)  # type: ignore[arg-type]
        if size is not None:
            source.size = size
        return source
    if isinstance(content, AsyncIterable):
        return AsyncIterSource(content, charset, size)
    if isinstance(content, Iterable):
        return SyncIterSource(content, charset, size)
    if _is_source(content):
        return content
    raise TypeError(f"cannot stream a {type(content).__name__}")


def _is_source(obj: object) -> bool:
    return hasattr(obj, "run") and hasattr(obj, "aclose") and hasattr(obj, "size")


__all__ = [
    "FLUSH",
    "AsyncIterSource",
    "BytesSource",
    "ChannelSource",
    "Content",
    "FileSource",
    "PullSource",
    "Source",
    "SyncIterSource",
    "as_source",
    "to_bytes",
]
