"""The article's experiments as one ASGI app: one path per scenario, sized by query.

Serve it with ``sluicegate serve --app sluicegate.demo.app:app`` (or let
``sluicegate demo`` start it under the doctor). Every backpressure scenario makes the
article's chunks: ``count`` chunks of ``chunk`` bytes, one every ``chunk / rate``
seconds (the article's ``createChunk()``: 20 MiB after 1 s, i.e. 20 MiB/s), each
freshly allocated and filled so its pages are really touched.

``/hello?turn=1|0``
    01: two writes; with a turn of the event loop between them they leave as two
    chunks, without one they leave as one.
``/ignore-backpressure``
    02, **the anti-pattern**: a producer task fills an unbounded ``asyncio.Queue`` at
    its own rate while the response drains it, so memory grows with the backlog. A
    safety cap (``cap``, default 1.5 GiB) cuts the response before it eats the machine.
``/wait``
    03: a raw ASGI loop awaiting ``send()`` per chunk; the server returns from
    ``send()`` once its buffer is drained: what Node's ``drain`` event does.
``/pull-source``
    04: a :class:`~sluicegate.PullSource` (Node's ``Readable``: ``_read`` + ``push``).
``/generator``
    05: an async generator through :class:`~sluicegate.StreamResponse`: the article's
    ``Readable.from(generator).pipe(res)``.
``/leaky``
    a live source that never waits, through ``Channel(policy="drop_oldest")``: a slow
    client loses whole messages, memory stays at the channel's ``limit``.
``/page``
    head-first HTML: the head leaves at once, a slow section, a section that fails
    once and is retried, and one that always fails and gets its fallback.
``/fail?size=10M&after=3M``
    a download whose producer raises after ``after`` bytes: the client sees an
    incomplete transfer (the status was already sent).
``/stats``
    JSON records of the last streams: bytes produced, chunk times, backlog peak, drops.
``/feed/...``
    the live feed: many subscribers, one publisher, a policy for the slow ones
    (:mod:`sluicegate.demo.livefeed`).

Query parameters: ``chunk`` (size, ``20M``), ``rate`` (producer bytes/s, ``20M``),
``count`` (chunks, ``20``), ``hwm`` (``high_water_mark``, ``64K``), ``cap``
(ignore-backpressure's safety cap), ``limit`` (leaky channel's budget). Sizes use
:func:`~sluicegate.units.parse_size` (``M`` = MiB, like curl). Bad values get a 400
``application/problem+json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from sluicegate.cli.examples import hello
from sluicegate.demo.livefeed import feed_app
from sluicegate.engine.channel import Channel
from sluicegate.engine.response import StreamResponse
from sluicegate.engine.sources import PullSource
from sluicegate.errors import ChannelClosed, ConfigError, OverBudget, ProducerFailed
from sluicegate.http.html import HTMLStream, Retry, Section
from sluicegate.http.problem import send_problem
from sluicegate.units import parse_rate, parse_size

__all__ = [
    "BACKPRESSURE_SCENARIOS",
    "MAX_CHUNK",
    "ArticleChunks",
    "Params",
    "StreamRecord",
    "app",
    "create_chunk",
    "parse_params",
    "recent_records",
]

logger = logging.getLogger("sluicegate.demo")

MiB = 1024 * 1024
#: The scenarios that stream generated chunks to a slow client, in the article's order.
BACKPRESSURE_SCENARIOS = ("ignore-backpressure", "wait", "pull-source", "generator", "leaky")
#: Largest chunk a request may ask for (the article's 100 MB/s case uses 100 MiB).
MAX_CHUNK = 256 * MiB
#: Largest ``cap`` for the anti-pattern's backlog.
MAX_CAP = 8 * 1024 * MiB
#: How many stream records ``/stats`` keeps.
RECORDS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Params:
    """One request's experiment: ``count`` chunks of ``chunk`` bytes at ``rate`` bytes/s.

    >>> Params(chunk=20 * MiB, rate=20 * MiB, count=20).interval
    1.0
    """

    chunk: int = 20 * MiB
    rate: float = 20.0 * MiB
    count: int = 20
    hwm: int = 64 * 1024
    cap: int = 1536 * MiB
    limit: int = 0  # 0: twice the chunk

    @property
    def interval(self) -> float:
        """Seconds the producer takes to make one chunk."""
        return self.chunk / self.rate

    @property
    def total(self) -> int:
        """Bytes the producer makes when nothing stops it."""
        return self.chunk * self.count

    @property
    def channel_limit(self) -> int:
        """The leaky channel's byte budget."""
        return self.limit or 2 * self.chunk


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


def parse_params(query: dict[str, str]) -> Params:
    """Read :class:`Params` from query values; raise ``ConfigError`` saying what is wrong.

    >>> parse_params({"chunk": "2M", "rate": "100M", "count": "3"}).interval
    0.02
    """
    d = Params()
    chunk = parse_size(query["chunk"]) if "chunk" in query else d.chunk
    rate = parse_rate(query["rate"]) if "rate" in query else d.rate
    hwm = parse_size(query["hwm"]) if "hwm" in query else d.hwm
    cap = parse_size(query["cap"]) if "cap" in query else d.cap
    limit = parse_size(query["limit"]) if "limit" in query else d.limit
    try:
        count = int(query.get("count", str(d.count)))
    except ValueError:
        raise ConfigError(f"bad count {query['count']!r}: must be a whole number") from None
    if not 1 <= chunk <= MAX_CHUNK:
        raise ConfigError(f"chunk must be from 1 byte to {MAX_CHUNK // MiB} MiB, not {chunk}")
    if not 1 <= count <= 100_000:
        raise ConfigError(f"count must be from 1 to 100000, not {count}")
    if not rate > 0:
        raise ConfigError(f"rate must be more than 0 bytes/s, not {rate}")
    if hwm < 1:
        raise ConfigError("hwm must be at least 1 byte")
    if not chunk <= cap <= MAX_CAP:
        raise ConfigError(f"cap must be from one chunk to {MAX_CAP // MiB} MiB, not {cap}")
    return Params(chunk=chunk, rate=rate, count=count, hwm=hwm, cap=cap, limit=limit)


# -- what the server did, for /stats -------------------------------------------------


@dataclass(slots=True)
class StreamRecord:
    """What one stream's producer did; ``/stats`` returns the recent ones."""

    scenario: str
    params: dict[str, float]
    started: float = field(default_factory=time.time)
    produced: int = 0
    chunks: int = 0
    #: seconds since ``started`` at which each chunk was made
    times: list[float] = field(default_factory=list)
    #: the anti-pattern's queued bytes, now and at worst
    backlog: int = 0
    backlog_peak: int = 0
    dropped: int = 0
    drops: int = 0
    #: why the producer stopped early, if it did
    stopped: str | None = None
    ended: float | None = None

    def made(self, n: int) -> None:
        """Count one chunk of ``n`` bytes, made now."""
        self.produced += n
        self.chunks += 1
        self.times.append(round(time.time() - self.started, 4))


_RECORDS: deque[StreamRecord] = deque(maxlen=RECORDS_KEPT)


def _record(scenario: str, p: Params) -> StreamRecord:
    rec = StreamRecord(scenario, {"chunk": p.chunk, "rate": p.rate, "count": p.count})
    _RECORDS.append(rec)
    return rec


def recent_records() -> list[dict[str, Any]]:
    """The recent stream records as JSON-ready dicts, oldest first."""
    return [asdict(r) for r in _RECORDS]


# -- the article's producer ------------------------------------------------------------


async def create_chunk(p: Params, index: int) -> bytes:
    """The article's ``createChunk()``: wait ``p.interval``, then a fresh, filled chunk."""
    await asyncio.sleep(p.interval)
    # Non-zero fill: a calloc'd zero buffer would not touch its pages and would
    # hide the memory it stands for.
    return bytes((1 + index % 250,)) * p.chunk


# -- 02: the anti-pattern ---------------------------------------------------------------


async def ignore_backpressure(p: Params, rec: StreamRecord) -> AsyncIterator[bytes]:
    """ANTI-PATTERN: the producer fills an unbounded queue at its own pace.

    The response drains the queue only as fast as the client reads, so every byte
    the producer makes ahead of the client waits in memory. This is how an
    innocent-looking "producer task + queue" ignores backpressure in Python.
    """
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()  # unbounded: the bug

    async def produce() -> None:
        try:
            for i in range(p.count):
                chunk = await create_chunk(p, i)
                rec.made(len(chunk))
                if rec.backlog + len(chunk) > p.cap:
                    # The safety limit, not a fix: stop before the machine swaps. The
                    # backlog is thrown away so the error is next, not 1.5 GiB later.
                    rec.stopped = f"backlog reached the safety cap of {p.cap // MiB} MiB"
                    while not queue.empty():
                        queue.get_nowait()
                    rec.backlog = 0
                    queue.put_nowait(OverBudget(rec.stopped))
                    return
                queue.put_nowait(chunk)
                rec.backlog += len(chunk)
                rec.backlog_peak = max(rec.backlog_peak, rec.backlog)
            queue.put_nowait(None)
        except Exception as exc:  # pragma: no cover - create_chunk does not fail
            queue.put_nowait(exc)

    task = asyncio.create_task(produce(), name="demo-ignore-backpressure")
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            rec.backlog = max(0, rec.backlog - len(item))
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        rec.backlog = 0
        rec.ended = time.time()


# -- 03: waiting for drain ----------------------------------------------------------------


async def wait_for_drain(p: Params, rec: StreamRecord, receive: Receive, send: Send) -> None:
    """A raw ASGI loop: ``await send()`` per chunk, like ``write()`` + ``drain`` in Node.

    ASGI servers return from ``send()`` only once their transport buffer is below its
    high-water mark, so awaiting it is exactly the article's "wait for drain".
    """
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch(), name="demo-wait-watch")
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for i in range(p.count):
            chunk = await create_chunk(p, i)
            if gone.is_set():
                rec.stopped = "client gone"
                return
            rec.made(len(chunk))
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:  # ASGI 2.4: send() raises once the client is gone
                rec.stopped = "client gone"
                return
            del chunk  # hold no chunk while the next one is made
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        rec.ended = time.time()


# -- 04: a pull source ----------------------------------------------------------------------


class ArticleChunks(PullSource):
    """The article's ``CustomReadableStream``: ``_read`` pushes until ``push`` says stop.

    >>> ArticleChunks(Params(count=2), None).left
    2
    """

    def __init__(self, p: Params, rec: StreamRecord | None) -> None:
        super().__init__()
        self.p = p
        self.rec = rec
        self.left = p.count
        self.size = p.total

    async def _read(self, size: int) -> None:
        while self.left:
            chunk = await create_chunk(self.p, self.p.count - self.left)
            self.left -= 1
            if self.rec is not None:
                self.rec.made(len(chunk))
            if not self.push(chunk):
                return
        self.push(None)

    async def destroy(self) -> None:
        if self.rec is not None:
            self.rec.ended = time.time()


# -- 05: a generator, piped ------------------------------------------------------------------


async def generate_file(p: Params, rec: StreamRecord) -> AsyncIterator[bytes]:
    """The article's ``generateFile()``: yield each chunk as it is made."""
    try:
        for i in range(p.count):
            chunk = await create_chunk(p, i)
            rec.made(len(chunk))
            yield chunk
            # A local keeps the last chunk alive while the next one is made: two
            # chunks in memory where one would do (the article's JS has no local).
            del chunk
    finally:
        rec.ended = time.time()


# -- leaky: a live source that never waits --------------------------------------------------


def leaky_response(p: Params, rec: StreamRecord) -> tuple[StreamResponse, asyncio.Task[None]]:
    """A live feed pushed into a ``drop_oldest`` channel: slow readers lose messages.

    Returns the response and the feed's task; cancel the task when the response ends.
    """
    channel = Channel(p.channel_limit, "drop_oldest")

    async def live() -> None:
        try:
            for i in range(p.count):
                chunk = await create_chunk(p, i)
                rec.made(len(chunk))
                channel.put_nowait(chunk)  # never waits: a live source cannot
                rec.drops, rec.dropped = channel.drops, channel.dropped_bytes
            channel.close()
        except ChannelClosed:  # the response closed it: the client left
            rec.stopped = "client gone"
        finally:
            rec.drops, rec.dropped = channel.drops, channel.dropped_bytes
            rec.ended = time.time()

    task = asyncio.create_task(live(), name="demo-leaky")
    return StreamResponse(channel, high_water_mark=p.hwm), task


# -- the failure cases ---------------------------------------------------------------------


async def failing_download(size: int, after: int) -> AsyncIterator[bytes]:
    """Yield ``after`` of ``size`` bytes, then fail as a PDF renderer might."""
    sent = 0
    piece = 64 * 1024
    while sent < after:
        n = min(piece, after - sent)
        yield b"%" * n
        sent += n
        await asyncio.sleep(0)
    raise ProducerFailed(f"the renderer failed after {after} of {size} bytes")


PAGE_HEAD = (
    "<!doctype html><html><head><meta charset='utf-8'><title>sluicegate demo page</title>"
    "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}"
    ".fallback{color:#a33}</style></head><body><h1>Head-first page</h1>"
)


def page() -> HTMLStream:
    """A head-first page: a slow section, one retried once, one that falls back."""
    attempts = {"flaky": 0}

    async def slow() -> str:
        await asyncio.sleep(0.5)
        return "<p>Slow section: rendered after 0.5 s, the head was already there.</p>"

    async def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ConnectionError("backend hiccup")
        return f"<p>Flaky section: rendered on attempt {attempts['flaky']}.</p>"

    async def broken() -> str:
        raise TimeoutError("recommendations service down")

    return HTMLStream(
        PAGE_HEAD,
        [
            Section(slow, name="slow"),
            Section(flaky, name="flaky"),
            Section(broken, fallback="<p class='fallback'>Unavailable: {error}</p>"),
        ],
        retry=Retry(times=3, timeout=1.0, backoff=0.05, jitter=0.0),
    )


INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>sluicegate demo</title>
</head><body><h1>sluicegate demo: the article's experiments</h1><ul>
<li><a href="/hello">/hello</a> (two chunks) and <a href="/hello?turn=0">/hello?turn=0</a></li>
<li><a href="/ignore-backpressure?count=2">/ignore-backpressure</a> (the anti-pattern)</li>
<li><a href="/wait?count=2">/wait</a> · <a href="/pull-source?count=2">/pull-source</a> ·
<a href="/generator?count=2">/generator</a> · <a href="/leaky?count=2">/leaky</a></li>
<li><a href="/page">/page</a> (head-first HTML with retry and fallback)</li>
<li><a href="/fail">/fail</a> (a download that fails mid-way)</li>
<li><a href="/stats">/stats</a></li></ul>
<p>Query: chunk=20M rate=20M count=20 (sizes in MiB, like curl).</p></body></html>"""


async def _send_bytes(send: Send, status: int, body: bytes, media_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The demo's ASGI application (see the module docstring for its paths)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    path = scope["path"].rstrip("/") or "/"
    query = _query(scope)
    try:
        if path == "/":
            await _send_bytes(send, 200, INDEX.encode(), "text/html; charset=utf-8")
            return
        if path == "/stats":
            body = json.dumps(recent_records()).encode()
            await _send_bytes(send, 200, body, "application/json")
            return
        if path == "/hello":
            turn = query.get("turn", "1") != "0"
            await StreamResponse(hello(turn), media_type="text/plain")(scope, receive, send)
            return
        if path == "/feed" or path.startswith("/feed/"):
            await feed_app(scope, receive, send, query)
            return
        if path == "/page":
            await page()(scope, receive, send)
            return
        if path == "/fail":
            size = parse_size(query.get("size", "10M"))
            after = parse_size(query.get("after", "3M"))
            if not 0 <= after < size <= MAX_CHUNK:
                raise ConfigError(f"need 0 <= after < size <= {MAX_CHUNK // MiB} MiB")
            fail: StreamResponse = StreamResponse(
                failing_download(size, after), content_length=size
            )
        else:
            scenario = path.lstrip("/")
            if scenario not in BACKPRESSURE_SCENARIOS:
                detail = f"no scenario at {path}; try / for the list"
                await send_problem(send, 404, "Not Found", detail)
                return
            p = parse_params(query)
    except ConfigError as exc:
        await send_problem(send, 400, "Bad Request", str(exc))
        return
    if path == "/fail":
        try:
            await fail(scope, receive, send)
        except ProducerFailed as exc:
            # Expected here: the response was aborted, the client sees a short body.
            logger.warning("/fail: %s (the client got an incomplete transfer)", exc)
        return
    rec = _record(scenario, p)
    if scenario == "wait":
        await wait_for_drain(p, rec, receive, send)
        return
    if scenario == "leaky":
        leaky, feed = leaky_response(p, rec)
        try:
            await leaky(scope, receive, send)
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        return
    source: AsyncIterator[bytes] | ArticleChunks
    if scenario == "ignore-backpressure":
        source = ignore_backpressure(p, rec)
    elif scenario == "pull-source":
        source = ArticleChunks(p, rec)
    else:
        source = generate_file(p, rec)
    try:
        await StreamResponse(source, high_water_mark=p.hwm)(scope, receive, send)
    except OverBudget as exc:
        # The anti-pattern's safety cap: expected, and the response was already cut.
        logger.warning("%s: %s; the response was cut", scenario, exc)
