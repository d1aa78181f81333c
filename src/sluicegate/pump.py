"""The pump: the one loop that moves bytes from a source to the server.

Two coroutines share one :class:`~sluicegate.channel.Channel` of ``high_water_mark``
bytes. The *producer* task drives the source, which waits for room before it makes
each chunk; the *sender* (the response's own task) takes what is ready and awaits the
server's ``send()``. So producing and sending overlap, and read-ahead never passes the
mark.

The sender never waits for more data when it has some: whatever is queued when it
looks goes out as one message (small chunks coalesced up to ``max_message`` bytes,
large ones cut into zero-copy ``memoryview`` slices). Bytes stay on the budget until
``send()`` returns, so the budget counts the message in flight as well.

The memory bound, per stream: the channel holds at most ``high_water_mark`` bytes
plus the producer's current chunk; the server holds what its transport buffers
(uvicorn: its 64 KiB write high-water mark plus the one message it accepted past it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from sluicegate.channel import Bytes, Channel
from sluicegate.metrics import REGISTRY, StreamMetrics
from sluicegate.sources import ChannelSource, Source

#: The most bytes put in one ``http.response.body`` message.
MAX_MESSAGE: Final = 64 * 1024

SendBody = Callable[[Bytes, bool], Awaitable[None]]


class Producer:
    """Runs a source into a channel in its own task, and always closes it."""

    def __init__(self, source: Source, channel: Channel, metrics: StreamMetrics) -> None:
        self.source = source
        self.channel = channel
        self.metrics = metrics
        self.task: asyncio.Task[None] | None = None

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
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_message(channel: Channel, max_message: int) -> Bytes | None:
    """Wait for the next message to send; None at the end; raise the producer's error."""
    while True:
        chunk = channel.take(max_message)
        if chunk is not None:
            return chunk
        if channel.closed:
            if channel.error is not None:
                raise channel.error
            return None
        await channel.wait_data()


async def pump(
    channel: Channel,
    send_body: SendBody,
    metrics: StreamMetrics,
    first: Bytes | None,
    *,
    max_message: int = MAX_MESSAGE,
    gone: Callable[[], bool] = lambda: False,
) -> None:
    """Send ``first`` and everything after it; the last message has ``more_body=False``.

    Raises the producer's error after sending what it produced before failing; returns
    early (without the final message) when ``gone()`` says the client left.
    """
    perf = time.perf_counter
    release = channel.release
    chunk = first
    while chunk is not None:
        n = chunk.nbytes if type(chunk) is memoryview else len(chunk)
        buffered = channel.buffered
        if buffered > metrics.peak_buffered:
            metrics.peak_buffered = buffered
        metrics.bytes_buffered = buffered
        # Fold the end into the last message when it is already known.
        more = not channel.exhausted or channel.error is not None
        t0 = perf()
        await send_body(chunk, more)
        metrics.blocked_seconds += perf() - t0
        release(n)
        metrics.bytes_sent += n
        if gone() or not more:
            return
        chunk = channel.take(max_message)
        if chunk is None:
            chunk = await next_message(channel, max_message)
    await send_body(b"", False)
