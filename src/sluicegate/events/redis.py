"""The Redis Streams backend: one topic per stream, shared by every worker and host.

* **Publish** is ``XADD {prefix}{topic} MAXLEN ~ replay * k <key> b <body>``: Redis
  gives the id (``<ms>-<seq>``), and that id is the event's SSE ``id``, so a client
  may resume on any worker. ``~`` lets Redis trim whole macro nodes, cheaply; a topic
  keeps at least ``replay`` events. redis-py's automatic retries are off: an ``XADD``
  whose reply was lost could otherwise be sent twice.
* **Delivery**: one reader task per watched topic per process, ``XREAD BLOCK`` from
  the last id it saw, hands each entry to the local broadcast, which fans it out.
  Ten thousand subscribers in a process cost Redis one blocked read. Its start id is
  read (``XREVRANGE … COUNT 1``) *before* a subscriber is registered, so it never
  starts past an event that subscriber's replay did not include.
* **Replay** is ``XRANGE <id> + COUNT n+1`` with ``XINFO STREAM`` in one ``MULTI``.
  The range starts at the client's id itself: when that entry is still there,
  nothing after it was trimmed; when it is gone, older than the first entry, and the
  stream has trimmed (``entries-added`` above ``length``, Redis 7), the client gets a
  resync. ``last-generated-id`` tells an id from the future (another stream, or a
  Redis that lost its data).
* **Redis going away**: a publish raises
  :class:`~sluicegate.events.errors.BackendUnavailable`; each watched topic's
  subscribers get it as an in-band ``error`` event and their streams end (clients
  reconnect with ``Last-Event-ID``); the reader retries every ``reconnect`` seconds
  from the id it had, so nothing is delivered twice when Redis is back.

``redis`` (redis-py) is imported when the backend starts, not with this module: it is
an optional dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from sluicegate.errors import ConfigError
from sluicegate.events.backend import Deliver, Fail, Published, Replay, Resync
from sluicegate.events.errors import BackendUnavailable
from sluicegate.events.framing import with_id
from sluicegate.events.ids import ZERO, Order, format_id, parse_id
from sluicegate.events.memory import DEFAULT_REPLAY

__all__ = ["RedisBackend"]

log = logging.getLogger("sluicegate.events")

# Take the lease if free, renew it if ours: KEYS lease, ARGV owner, ttl ms.
_LEASE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: Entries one ``XREAD`` returns at most.
READ_COUNT: Final = 512


class RedisBackend:
    """Events in Redis Streams; see the module docstring.

    :param url: ``redis://host:port/db`` (anything ``redis.asyncio.from_url`` takes).
    :param replay: events kept per topic (``MAXLEN ~``).
    :param prefix: put in front of each topic to make its stream's key.
    :param block: seconds one ``XREAD`` waits for news.
    :param reconnect: seconds between a reader's attempts while Redis is away.
    """

    def __init__(
        self,
        url: str,
        *,
        replay: int = DEFAULT_REPLAY,
        prefix: str = "sluicegate:events:",
        block: float = 1.0,
        reconnect: float = 0.5,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"expected a redis://, rediss:// or unix:// URL, not {url!r}")
        if not isinstance(replay, int) or isinstance(replay, bool) or replay < 1:
            raise ConfigError(f"replay must be a number of events >= 1, not {replay!r}")
        self.url = url
        self.replay_size = replay
        self.prefix = prefix
        self.block_ms = max(1, int(block * 1000))
        self.reconnect = reconnect
        self._redis: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._deliver: Deliver | None = None
        self._fail: Fail | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._watching: dict[str, asyncio.Future[None]] = {}

    async def start(self, deliver: Deliver, fail: Fail) -> None:
        """Connect (and check the connection with a ``PING``)."""
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError(
                "the Redis backend needs redis-py: pip install 'sluicegate[redis]'"
            ) from None
        self._errors = (RedisError, OSError)
        self._deliver, self._fail = deliver, fail
        self._redis = aioredis.from_url(
            self.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0
        )
        try:
            async with self._mapped("connect"):
                await self._redis.ping()
        except BackendUnavailable:
            client, self._redis = self._redis, None
            with contextlib.suppress(*self._errors):
                await client.aclose()
            raise

    def _key(self, topic: str) -> str:
        return self.prefix + topic

    @contextlib.asynccontextmanager
    async def _mapped(self, doing: str) -> Any:
        """Turn redis-py's and the socket's errors into BackendUnavailable."""
        try:
            yield
        except self._errors as exc:
            await self._drop_idle_connections()
            raise BackendUnavailable(f"Redis unavailable ({doing}): {exc}") from exc

    async def _drop_idle_connections(self) -> None:
        """After a failure, forget the pool's idle connections: they may be to a Redis
        that has since restarted, and with retries off the next command would fail on
        one of them although Redis is back."""
        if self._redis is not None:
            with contextlib.suppress(*self._errors):
                await self._redis.connection_pool.disconnect(inuse_connections=False)

    async def publish(self, topic: str, key: str, body: bytes) -> Published:
        """``XADD`` with ``MAXLEN ~``; the stream id is the event id."""
        if self._redis is None:
            raise BackendUnavailable("the Redis backend is not started")
        async with self._mapped("publish"):
            raw = await self._redis.xadd(
                self._key(topic),
                {"k": key, "b": body},
                maxlen=self.replay_size,
                approximate=True,
            )
        event_id = _text(raw)
        return Published(event_id, parse_id(event_id), key, with_id(event_id, body))

    async def replay(self, topic: str, after: Order, limit: int) -> Replay | Resync:
        """``XRANGE`` from the id, checked against ``XINFO STREAM`` in one transaction."""
        if self._redis is None:
            raise BackendUnavailable("the Redis backend is not started")
        key = self._key(topic)
        # From the id itself (inclusive): finding it tells that nothing after it was trimmed.
        start = "-" if after == ZERO else format_id(after)
        async with self._mapped("replay"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.xrange(key, min=start, max="+", count=limit + 1)
            pipe.xinfo_stream(key)
            entries, info = await pipe.execute(raise_on_error=False)
        if isinstance(entries, BaseException):
            raise BackendUnavailable(f"Redis refused XRANGE: {entries}")
        events = [_published(i, f) for i, f in entries]
        if isinstance(info, BaseException):  # no such key: the topic has no events yet
            head, trimmed, first = ZERO, False, None
        else:
            head = parse_id(_text(info.get("last-generated-id") or b"0-0"))
            # XADD's MAXLEN trims without recording what it removed (max-deleted-entry-id
            # is XDEL's); entries-added above length says that something went.
            trimmed = int(info.get("entries-added") or 0) > int(info.get("length") or 0)
            entry = info.get("first-entry")
            first = parse_id(_text(entry[0])) if entry else None
        head_id = format_id(head)
        if after > head:
            return Resync(head_id, "the id is newer than any event of this topic")
        if events and events[0].order == after:
            return Replay(events[1 : limit + 1], head_id)
        if trimmed and (after == ZERO or first is None or after < first):
            return Resync(head_id, "the events after this id are no longer kept")
        return Replay(events[:limit], head_id)

    async def watch(self, topic: str) -> None:
        """Start this process's reader of ``topic``, from the stream's newest id now."""
        ready = self._watching.get(topic)
        if ready is None:
            ready = self._watching[topic] = asyncio.get_running_loop().create_future()
            try:
                async with self._mapped("watch"):
                    newest = await self._redis.xrevrange(self._key(topic), count=1)
            except BaseException as exc:
                del self._watching[topic]
                ready.set_exception(exc)
                ready.exception()  # retrieved: the callers get it
                raise
            start = _text(newest[0][0]) if newest else "0-0"
            self._readers[topic] = asyncio.create_task(
                self._read(topic, start), name=f"sluicegate-events-reader-{topic}"
            )
            ready.set_result(None)
        elif not ready.done():
            await asyncio.shield(ready)
        elif ready.exception() is not None:
            raise ready.exception()  # type: ignore[misc]

    async def _read(self, topic: str, last: str) -> None:
        key = self._key(topic)
        redis = self._redis
        broken = False
        while True:
            try:
                reply = await redis.xread({key: last}, block=self.block_ms, count=READ_COUNT)
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                await self._drop_idle_connections()
                if not broken:
                    broken = True
                    log.warning("Redis went away while reading %s: %s", topic, exc)
                    if self._fail is not None:
                        self._fail(topic, exc)
                await asyncio.sleep(self.reconnect)
                continue
            if broken:
                broken = False
                log.info("Redis is back; reading %s from %s", topic, last)
            deliver = self._deliver
            for _stream, entries in reply or ():
                for raw_id, fields in entries:
                    event = _published(raw_id, fields)
                    last = event.id
                    if deliver is not None:
                        deliver(topic, event)

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew a lease: one Lua script, so two workers never both hold it."""
        if self._redis is None:
            raise BackendUnavailable("the Redis backend is not started")
        async with self._mapped("lease"):
            held = await self._redis.eval(
                _LEASE, 1, f"{self.prefix}lease:{name}", owner, max(1, int(ttl * 1000))
            )
        return bool(held)

    async def count(self, name: str) -> int:
        """``INCR`` a shared counter."""
        if self._redis is None:
            raise BackendUnavailable("the Redis backend is not started")
        async with self._mapped("count"):
            return int(await self._redis.incr(f"{self.prefix}count:{name}"))

    async def aclose(self) -> None:
        """Stop the readers and disconnect."""
        readers = list(self._readers.values())
        self._readers.clear()
        self._watching.clear()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        self._deliver = None
        if self._redis is not None:
            with contextlib.suppress(*self._errors):
                await self._redis.aclose()
            self._redis = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _published(raw_id: Any, fields: dict[Any, Any]) -> Published:
    event_id = _text(raw_id)
    key = fields.get(b"k", b"message")
    body = fields.get(b"b", b"data: \n\n")
    return Published(event_id, parse_id(event_id), _text(key), with_id(event_id, bytes(body)))
