"""A truly slow, pausable, resumable, verifying HTTP/1.1 client.

``curl --limit-rate`` paces what it hands to you, not what the kernel takes off
the wire: the receive buffer autotunes to megabytes and fills at full speed, so the
server never feels a slow reader. :func:`fetch` reads from a plain non-blocking
socket with a small ``SO_RCVBUF`` set before connecting, in small reads paced by a
token bucket, so TCP flow control really reaches the server. Nothing reads ahead
of the pacing (no StreamReader buffer), and while paused nothing is read at all.

HTTP parsing is h11's, which also gives us chunked trailers (``Content-Digest``)
that httpx and browsers drop::

    result = await fetch("http://127.0.0.1:8000/big", output="big.bin",
                         limit_rate="1M", resume=True, verify=True)
    assert result.complete and result.verified is not False
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urljoin, urlsplit

import h11

from sluicegate.client.digests import format_sha256, parse_sha256
from sluicegate.client.errors import DigestMismatch, FetchError, HTTPStatusError, IncompleteTransfer
from sluicegate.client.ratelimit import TokenBucket, default_rcvbuf, read_size_for
from sluicegate.client.resume import PartMeta, plan_response, request_headers
from sluicegate.client.schedule import Event, Schedule, ScheduleCursor, parse_schedule
from sluicegate.errors import ConfigError
from sluicegate.units import parse_rate

__all__ = ["ExitCode", "FetchCounters", "FetchResult", "fetch", "parse_url"]

USER_AGENT = "sluicegate-fetch"
#: receive buffer for an unpaced reader that may pause: small enough that a pause
#: stops the server within a few round trips
PAUSE_RCVBUF = 64 * 1024
#: largest read before the response head is parsed
HEAD_READ = 16 * 1024
#: MSS a paced reader announces (an Ethernet path's), see ``_set_mss``
PACED_MSS = 1448
_HASH_CHUNK = 1024 * 1024


class ExitCode(IntEnum):
    """Process exit codes of ``sluicegate fetch`` (also :attr:`FetchResult.exit_code`)."""

    #: the body arrived whole (and, with verify, its digest matched or none was offered)
    OK = 0
    #: an unexpected internal error
    UNEXPECTED = 1
    #: bad arguments: URL, rate, schedule, output path
    USAGE = 2
    #: the server answered with a status we do not accept (>= 300, or 206/416 unasked)
    HTTP_STATUS = 3
    #: the connection ended, stalled past the timeout or was stopped before the end
    INCOMPLETE = 4
    #: the body is whole but its SHA-256 differs from the server's digest
    DIGEST_MISMATCH = 5
    #: could not connect, or the connection failed before a response arrived
    CONNECTION = 6
    #: the output file could not be written
    OUTPUT = 7


@dataclass(slots=True, eq=False)
class FetchCounters:
    """Live counters of one fetch, readable while it runs (e.g. from a test).

    ``samples`` holds ``(seconds since start, body bytes read)`` at most every
    ``sample_interval`` seconds and at every pause edge, so a caller can compare
    what a server sent with what the client read over time.
    """

    started: float = field(default_factory=time.monotonic)
    sample_interval: float = 0.1
    #: monotonic times of milestones
    connected_at: float | None = None
    first_byte_at: float | None = None
    headers_at: float | None = None
    #: bytes taken off the socket: head, framing and body
    socket_bytes: int = 0
    #: body bytes of this response
    body_bytes: int = 0
    #: bytes already on disk before this response (resume)
    offset: int = 0
    #: full size of the representation when known
    size: int | None = None
    status: int | None = None
    reads: int = 0
    paused: bool = False
    paused_seconds: float = 0.0
    rate: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)
    _last_sample: float = field(default=-math.inf, repr=False)

    def sample(self, now: float, force: bool = False) -> None:
        """Record ``(now - started, body_bytes)`` if due (or ``force``)."""
        if force or now - self._last_sample >= self.sample_interval:
            self.samples.append((now - self.started, self.body_bytes))
            self._last_sample = now

    @property
    def ttfb(self) -> float | None:
        """Seconds from start to the first response byte."""
        return None if self.first_byte_at is None else self.first_byte_at - self.started


@dataclass(slots=True, eq=False)
class FetchResult:
    """What a fetch did. ``complete`` and ``verified`` are the answers that matter.

    ``verified`` is ``True`` when a digest was checked and matched, ``False`` on a
    mismatch, ``None`` when verification was not asked for or nothing offered a digest.
    """

    url: str
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    #: body bytes received by this run
    bytes_received: int = 0
    #: bytes of the part that were already on disk (resume)
    offset: int = 0
    size: int | None = None
    complete: bool = False
    verified: bool | None = None
    #: ``sha-256=:...:`` of the whole representation (part + body), with verify
    digest: str | None = None
    expected_digest: str | None = None
    #: where the expected digest came from: ``trailer``, ``header`` or ``ledger``
    digest_source: str | None = None
    ttfb: float | None = None
    duration: float = 0.0
    output: Path | None = None
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    counters: FetchCounters = field(default_factory=FetchCounters)

    @property
    def total_bytes(self) -> int:
        """Bytes of the file we hold: resumed part plus this run's body."""
        return self.offset + self.bytes_received

    @property
    def rate(self) -> float:
        """Body bytes per second over the whole fetch."""
        return self.bytes_received / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``sluicegate fetch --json`` prints)."""
        return {
            "url": self.url,
            "status": self.status,
            "bytes": self.bytes_received,
            "offset": self.offset,
            "total_bytes": self.total_bytes,
            "size": self.size,
            "duration": round(self.duration, 6),
            "rate": round(self.rate, 1),
            "ttfb": None if self.ttfb is None else round(self.ttfb, 6),
            "paused_seconds": round(self.counters.paused_seconds, 3),
            "complete": self.complete,
            "verified": self.verified,
            "digest": self.digest,
            "expected_digest": self.expected_digest,
            "digest_source": self.digest_source,
            "output": None if self.output is None else str(self.output),
            "exit_code": int(self.exit_code),
            "error": self.error,
            "notes": self.notes,
        }


# -- arguments -----------------------------------------------------------------------


def parse_url(url: str) -> SplitResult:
    """Check that ``url`` is an ``http://`` URL with a host; return its parts."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "https":
        raise ConfigError(f"bad URL {url!r}: https is not supported (plain http only)")
    if parts.scheme.lower() != "http":
        raise ConfigError(f"bad URL {url!r}: expected http://HOST[:PORT]/PATH")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad URL {url!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"bad URL {url!r}: no host")
    if port == 0:
        raise ConfigError(f"bad URL {url!r}: port 0")
    return parts


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise ConfigError(f"bad output {str(output)!r}: is a directory")
    parent = output.parent
    if not parent.is_dir():
        raise ConfigError(f"bad output {str(output)!r}: directory {str(parent)!r} does not exist")
    # Open the part for appending (never truncating a part we may resume): the only
    # reliable test of writability (permissions, read-only mounts, root).
    part = output.with_name(output.name + ".part")
    existed = part.exists()
    try:
        with part.open("ab"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"bad output {str(output)!r}: cannot write {str(part)!r} ({exc.strerror or exc})"
        ) from None
    if not existed:
        part.unlink()


def _build_schedule(
    schedule: Schedule | str | None, pause_after: float | None, pause_for: float | None
) -> Schedule:
    plan = parse_schedule(schedule) if isinstance(schedule, str) else (schedule or Schedule())
    if (pause_after is None) != (pause_for is None):
        raise ConfigError("pause_after and pause_for go together: give both or neither")
    if pause_after is not None and pause_for is not None:
        if pause_after < 0 or not math.isfinite(pause_after):
            raise ConfigError(f"pause_after must be a finite time >= 0, not {pause_after}")
        if pause_for <= 0:
            raise ConfigError(f"pause_for must be more than 0 s, not {pause_for}")
        plan = plan + Schedule((Event(pause_after, "pause", pause_for),))
    return plan


# -- the transfer ----------------------------------------------------------------------


class _Stopped(Exception):
    """A ``stop`` event in the schedule cut the transfer."""


class _StallTimeout(Exception):
    """No byte arrived for ``timeout`` seconds while we wanted some."""


_LINK = re.compile(r"<([^>]*)>([^,<]*)")


def _transfer_status_link(headers: dict[str, str]) -> str | None:
    for target, params in _LINK.findall(headers.get("link", "")):
        for param in params.split(";"):
            name, _, value = param.partition("=")
            rels = value.strip().strip('"').lower().split()
            if name.strip().lower() == "rel" and "transfer-status" in rels:
                return str(target)
    return None


def _set_mss(sock: socket.socket, mss: int) -> None:
    # Loopback's 64 KiB MSS makes the server's send buffer autotune to megabytes
    # (it scales with MSS x congestion window); announcing an Ethernet-sized MSS
    # in our SYN keeps it near what a real network path would give.
    with contextlib.suppress(OSError, AttributeError):  # not every platform allows it
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)


def _burst(read_size: int) -> int:
    # Two reads' worth of credit: a read the event loop ran late (a busy machine)
    # is made up by the next one instead of lowering the rate.
    return 2 * read_size


class _Connection:
    """One paced HTTP/1.1 exchange over a non-blocking socket, parsed by h11."""

    def __init__(
        self,
        parts: SplitResult,
        *,
        rate: float | None,
        rcvbuf: int | None,
        mss: int | None,
        timeout: float,
        schedule: Schedule,
        counters: FetchCounters,
        on_progress: Callable[[FetchCounters], None] | None,
    ) -> None:
        self.parts = parts
        self.rcvbuf = rcvbuf
        self.mss = mss
        self.timeout = timeout
        self.cursor = ScheduleCursor(schedule)
        self.counters = counters
        self.on_progress = on_progress
        self.loop = asyncio.get_running_loop()
        self.read_size = read_size_for(rate)
        self.bucket = TokenBucket(rate, _burst(self.read_size), time.monotonic())
        counters.rate = rate
        self.conn = h11.Connection(our_role=h11.CLIENT)
        self.sock: socket.socket | None = None
        self.body_start: float | None = None
        self.paused_until = 0.0

    async def connect(self) -> None:
        host = self.parts.hostname or ""
        port = self.parts.port or 80
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                if self.rcvbuf is not None:
                    # Before connect: the window scale is agreed in the SYN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
                if self.mss is not None:
                    _set_mss(sock, self.mss)
                async with asyncio.timeout(self.timeout):
                    await self.loop.sock_connect(sock, address)
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = (
                    exc
                    if isinstance(exc, OSError)
                    else OSError(f"timed out after {self.timeout} s")
                )
                continue
            self.sock = sock
            self.counters.connected_at = time.monotonic()
            return
        raise last or OSError(f"no address for {host!r}")

    async def send_request(self, extra: Sequence[tuple[str, str]]) -> None:
        assert self.sock is not None
        target = self.parts.path or "/"
        if self.parts.query:
            target += "?" + self.parts.query
        host = self.parts.netloc.rpartition("@")[2]
        headers = [
            ("Host", host),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),
            # Ask for trailers so a server may send Content-Digest after the body.
            ("TE", "trailers"),
            ("Connection", "TE, close"),
            *extra,
        ]
        data = self.conn.send(h11.Request(method="GET", target=target, headers=headers))
        data += self.conn.send(h11.EndOfMessage())
        async with asyncio.timeout(self.timeout):
            await self.loop.sock_sendall(self.sock, data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def start_body_clock(self) -> None:
        self.body_start = time.monotonic()

    def _apply_due_events(self, now: float) -> None:
        if self.body_start is None:
            return
        while now >= self.paused_until and (event := self.cursor.pop(now - self.body_start)):
            if event.action == "stop":
                raise _Stopped(f"stopped by the schedule at {event.at:g} s")
            if event.action == "rate":
                self.read_size = read_size_for(event.value)
                self.bucket.set_rate(event.value, _burst(self.read_size), now)
                self.counters.rate = event.value
            elif event.action == "pause" and event.value is not None:
                # Later events wait for the pause to end (the loop condition).
                self.paused_until = now + event.value
                self.counters.paused = True
                self.counters.sample(now, force=True)
                self._progress()

    def _next_event_in(self, now: float) -> float:
        nxt = self.cursor.next_at()
        if self.body_start is None or nxt is None:
            return math.inf
        return max(0.0, self.body_start + nxt - now)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counters)

    async def next_event(self) -> Any:
        """The next h11 event, reading from the socket (paced) as needed."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            await self._read_once()

    async def _read_once(self) -> None:
        assert self.sock is not None
        counters = self.counters
        waiting_since = time.monotonic()
        while True:
            now = time.monotonic()
            self._apply_due_events(now)
            if now < self.paused_until:
                # Paused: nothing leaves the kernel buffer, so the window closes and
                # the server's send() blocks.
                await asyncio.sleep(self.paused_until - now)
                end = time.monotonic()
                counters.paused_seconds += end - now
                counters.paused = False
                counters.sample(end, force=True)
                self._progress()
                waiting_since = end
                continue
            delay = self.bucket.delay_for(self.read_size, now)
            if delay > 0:
                await asyncio.sleep(min(delay, self._next_event_in(now)))
                waiting_since += time.monotonic() - now  # pacing is not stalling
                continue
            want = min(self.read_size, self.bucket.available(now))
            if self.body_start is None:
                # Until the head is parsed read little, so a client that pauses at
                # the first body byte (a stall) has not already taken a big slice.
                want = min(want, HEAD_READ)
            budget = self.timeout - (now - waiting_since)
            if budget <= 0:
                raise _StallTimeout(f"no data for {self.timeout:g} s")
            try:
                async with asyncio.timeout(min(budget, self._next_event_in(now))):
                    data = await self.loop.sock_recv(self.sock, want)
            except TimeoutError:
                continue
            end = time.monotonic()
            self.bucket.consume(len(data), end)
            if counters.first_byte_at is None and data:
                counters.first_byte_at = end
            counters.socket_bytes += len(data)
            counters.reads += 1
            self.conn.receive_data(data)
            if self.bucket.rate is None:
                # sock_recv returns without suspending when data is ready, so an
                # unpaced reader on a fast link would never let other tasks run.
                await asyncio.sleep(0)
            return


@dataclass(slots=True)
class _Options:
    url: str
    parts: SplitResult
    output: Path | None
    rate: float | None
    schedule: Schedule
    resume: bool
    verify: bool
    rcvbuf: int | None
    mss: int | None
    timeout: float
    headers: list[tuple[str, str]]
    on_progress: Callable[[FetchCounters], None] | None


class _Body:
    """Where body bytes go: the part file (maybe) and the hashes (with verify)."""

    def __init__(self, options: _Options, part: Path | None, offset: int) -> None:
        self.part = part
        self.file = None if part is None else part.open("ab" if offset else "wb")
        self.whole = hashlib.sha256() if options.verify else None
        # Content-Digest covers this response's content only: for a 206 that is
        # not the whole file, so keep a second hash when resuming.
        self.content = hashlib.sha256() if options.verify and offset else None

    async def hash_existing(self, offset: int) -> None:
        if self.whole is None or self.part is None or offset == 0:
            return
        await asyncio.to_thread(_hash_file, self.part, offset, self.whole)

    def write(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)
        if self.whole is not None:
            self.whole.update(data)
        if self.content is not None:
            self.content.update(data)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _hash_file(path: Path, length: int, into: Any) -> None:
    with path.open("rb") as f:
        left = length
        while left > 0:
            chunk = f.read(min(_HASH_CHUNK, left))
            if not chunk:
                break
            into.update(chunk)
            left -= len(chunk)


def _headers_dict(pairs: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in pairs:
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def _decode(raw: Any) -> list[tuple[str, str]]:
    return [(bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1")) for n, v in raw]


Framing = Literal["length", "chunked", "close", "none"]


def _framing(status: int, headers: dict[str, str]) -> Framing:
    if status in (204, 304) or 100 <= status < 200:
        return "none"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in headers:
        return "length"
    return "close"


async def _run(options: _Options, counters: FetchCounters) -> FetchResult:
    result = FetchResult(url=options.url, output=options.output, counters=counters)
    part = meta_path = None
    if options.output is not None:
        part = options.output.with_name(options.output.name + ".part")
        meta_path = options.output.with_name(options.output.name + ".part.json")
    try:
        await _attempts(options, counters, result, part, meta_path)
    except OSError as exc:
        # Connection-level failures were handled inside; what reaches here is local I/O.
        result.exit_code = ExitCode.OUTPUT
        result.error = f"cannot write output: {exc}"
    result.duration = time.monotonic() - counters.started
    result.ttfb = counters.ttfb
    return result


async def _attempts(
    options: _Options,
    counters: FetchCounters,
    result: FetchResult,
    part: Path | None,
    meta_path: Path | None,
) -> None:
    resume = options.resume
    # At most two requests: a ranged one, then (if the server says the part is no
    # good) one from the start.
    for _ in range(2):
        offset, range_headers = _resume_point(resume, part, meta_path, options.url, result)
        retry = await _exchange(options, counters, result, part, meta_path, offset, range_headers)
        if not retry:
            return
        result.notes.append("server refused the range: starting over")
        resume = False
        _discard(part, meta_path)
    result.exit_code = ExitCode.HTTP_STATUS
    result.error = "server refused the range twice"


# Small metadata operations on local files: cheap enough to do on the loop.


def _resume_point(
    resume: bool, part: Path | None, meta_path: Path | None, url: str, result: FetchResult
) -> tuple[int, list[tuple[str, str]]]:
    if not resume or part is None or meta_path is None or not part.exists():
        return 0, []
    offset, headers = request_headers(part.stat().st_size, PartMeta.load(meta_path), url)
    if offset == 0:
        result.notes.append("no usable validator for the part: starting over")
    return offset, headers


def _discard(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


async def _exchange(
    options: _Options,
    counters: FetchCounters,
    result: FetchResult,
    part: Path | None,
    meta_path: Path | None,
    offset: int,
    range_headers: list[tuple[str, str]],
) -> bool:
    """One request. Returns True when it should be retried without a range."""
    conn = _Connection(
        options.parts,
        rate=options.rate,
        rcvbuf=options.rcvbuf,
        mss=options.mss,
        timeout=options.timeout,
        schedule=options.schedule,
        counters=counters,
        on_progress=options.on_progress,
    )
    body: _Body | None = None
    try:
        try:
            await conn.connect()
            await conn.send_request([*range_headers, *options.headers])
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Response):
                    break
        except (OSError, TimeoutError, h11.ProtocolError, _StallTimeout) as exc:
            result.exit_code = ExitCode.CONNECTION
            result.error = f"connection failed: {_describe(exc)}"
            return False

        conn.start_body_clock()
        counters.headers_at = time.monotonic()
        counters.status = result.status = event.status_code
        result.headers = _decode(event.headers)
        headers = _headers_dict(result.headers)
        plan = plan_response(event.status_code, headers, offset)
        if plan.kind == "retry":
            return True
        if plan.kind == "error":
            result.exit_code = ExitCode.HTTP_STATUS
            result.error = _status_error(event.status_code, headers, offset)
            return False
        if plan.kind == "done":
            result.offset = result.size = counters.offset = offset
            counters.size = offset
            result.complete = True
            result.notes.append("the part was already complete (416)")
            _finish(options, result, part, meta_path)
            return False

        result.offset = counters.offset = plan.start
        result.size = counters.size = plan.size
        if part is not None and meta_path is not None:
            PartMeta.from_headers(options.url, headers, plan.size).save(meta_path)
        body = _Body(options, part, plan.start)
        await body.hash_existing(plan.start)
        framing = _framing(event.status_code, headers)
        reason = await _read_body(conn, body, counters, result)
        result.bytes_received = counters.body_bytes
        body.close()
        if reason is not None:
            result.exit_code = ExitCode.INCOMPLETE
            of = f" of {result.size}" if result.size is not None else ""
            result.error = f"incomplete: {reason} after {result.total_bytes}{of} bytes"
            return False
        result.complete = True
        if options.verify:
            await _verify(options, conn, result, body, headers)
        if framing == "close" and result.verified is not True:
            result.complete = False
            result.exit_code = ExitCode.INCOMPLETE
            result.error = (
                "incomplete: no Content-Length and not chunked, so the end of the body "
                "cannot be told from a cut connection (use --verify with a digest)"
            )
            return False
        if result.verified is False:
            result.exit_code = ExitCode.DIGEST_MISMATCH
            result.error = (
                f"digest mismatch: got {result.digest}, {result.digest_source} says "
                f"{result.expected_digest}"
            )
            # The part is wrong, not short: resuming it would only extend the damage.
            _discard(None, meta_path)
            return False
        _finish(options, result, part, meta_path)
        return False
    finally:
        if body is not None:
            body.close()
        conn.close()


async def _read_body(
    conn: _Connection, body: _Body, counters: FetchCounters, result: FetchResult
) -> str | None:
    """Read the body; return why it is incomplete, or ``None`` when whole."""
    counters.sample(time.monotonic(), force=True)
    while True:
        try:
            event = await conn.next_event()
        except h11.RemoteProtocolError as exc:
            closed = "peer closed connection" in str(exc)
            return "connection closed mid-body" if closed else f"bad framing ({exc})"
        except OSError as exc:
            return f"connection failed mid-body ({_describe(exc)})"
        except (_Stopped, _StallTimeout) as exc:
            return str(exc)
        if isinstance(event, h11.Data):
            data = bytes(event.data)
            body.write(data)
            counters.body_bytes += len(data)
            counters.sample(time.monotonic())
            conn._progress()
        elif isinstance(event, h11.EndOfMessage):
            result.trailers = _decode(event.headers)
            counters.sample(time.monotonic(), force=True)
            conn._progress()
            return None
        elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - h11 raises first
            return "connection closed mid-body"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__


def _status_error(status: int, headers: dict[str, str], offset: int) -> str:
    if 300 <= status < 400 and "location" in headers:
        return f"HTTP {status}: redirect to {headers['location']} (not followed)"
    if status in (206, 416) and offset == 0:
        return f"HTTP {status} to a request without a usable range"
    return f"HTTP {status}"


def _finish(
    options: _Options, result: FetchResult, part: Path | None, meta_path: Path | None
) -> None:
    if options.output is not None and part is not None:
        os.replace(part, options.output)
        if meta_path is not None:
            meta_path.unlink(missing_ok=True)


async def _verify(
    options: _Options,
    conn: _Connection,
    result: FetchResult,
    body: _Body,
    headers: dict[str, str],
) -> None:
    assert body.whole is not None
    whole = body.whole.digest()
    content = body.content.digest() if body.content is not None else whole
    result.digest = format_sha256(whole)
    checks: list[tuple[str, bytes, bytes]] = []
    for source, fields in (("trailer", _headers_dict(result.trailers)), ("header", headers)):
        for name, ours in (("repr-digest", whole), ("content-digest", content)):
            theirs = parse_sha256(fields.get(name, ""))
            if theirs is not None:
                checks.append((source, theirs, ours))
    link = _transfer_status_link(headers)
    if link is not None:
        ledger = await _ledger(urljoin(options.url, link), result, options.timeout)
        if ledger is not None:
            checks.append(("ledger", ledger, whole))
    if not checks:
        result.notes.append("no digest offered: completeness checked by length only")
        return
    # Report the first failing check, else the first one.
    failing = [c for c in checks if c[1] != c[2]]
    source, theirs, _ = failing[0] if failing else checks[0]
    result.digest_source = source
    result.expected_digest = format_sha256(theirs)
    result.verified = not failing and result.verified is not False


async def _ledger(status_url: str, result: FetchResult, limit: float) -> bytes | None:
    """Ask the transfer ledger for the digest and leave a receipt.

    Sets ``result.verified = False`` if the ledger's receipt says no. A ledger that
    cannot be reached is noted, not fatal: the ledger is an extra witness.
    """
    import httpx  # the ledger is optional; keep plain fetches free of httpx

    assert result.digest is not None
    try:
        async with httpx.AsyncClient(timeout=limit) as client:
            status: dict[str, Any] = {}
            # The server may record the digest a moment after the last byte left.
            for _ in range(20):
                response = await client.get(status_url)
                response.raise_for_status()
                status = response.json()
                if status.get("digest"):
                    break
                await asyncio.sleep(0.1)
            receipt = await client.post(
                status_url.rstrip("/") + "/receipt",
                json={"bytes_received": result.total_bytes, "digest": result.digest},
            )
            receipt.raise_for_status()
            answer = receipt.json()
    except (httpx.HTTPError, ValueError, json.JSONDecodeError) as exc:
        result.notes.append(f"transfer ledger unavailable: {exc}")
        return None
    if isinstance(answer, dict) and answer.get("verified") is False:
        result.verified = False
    digest = parse_sha256(str(status.get("digest") or ""))
    if digest is None:
        result.notes.append("transfer ledger gave no sha-256 digest")
    return digest


# -- public entry point -----------------------------------------------------------------


async def fetch(
    url: str,
    *,
    output: str | os.PathLike[str] | None = None,
    limit_rate: float | str | None = None,
    pause_after: float | None = None,
    pause_for: float | None = None,
    schedule: Schedule | str | None = None,
    resume: bool = False,
    verify: bool = False,
    rcvbuf: int | None = None,
    mss: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - a stall timeout, not a deadline for the call
    headers: Sequence[tuple[str, str]] = (),
    on_progress: Callable[[FetchCounters], None] | None = None,
    counters: FetchCounters | None = None,
    check: bool = True,
) -> FetchResult:
    """GET ``url`` like a real slow reader; return a :class:`FetchResult`.

    * ``limit_rate``: bytes per second (or ``"64K"``, ``"10M"``) read off the socket;
      ``SO_RCVBUF`` defaults to about 1/4 s of it (``rcvbuf`` overrides), and a
      paced reader announces an MSS of 1448 (``mss`` overrides) so that on loopback
      the server's send buffer does not autotune to megabytes.
    * ``pause_after`` / ``pause_for``: stop reading for ``pause_for`` seconds,
      ``pause_after`` seconds into the body; ``schedule`` scripts more
      (see :mod:`sluicegate.client.schedule`).
    * ``output``: write to ``OUTPUT.part``, renamed to ``OUTPUT`` only when whole
      (and verified). ``resume`` continues an existing part with ``Range``/``If-Range``.
    * ``verify``: check SHA-256 against ``Repr-Digest``/``Content-Digest`` (header or
      trailer) and the transfer ledger when the response links one.
    * ``timeout``: seconds without a byte while we want one (pauses do not count).
    * ``counters``: pass your own to watch the fetch live; ``on_progress`` is called
      with them after every read and at pause edges.

    Bad arguments raise :class:`~sluicegate.errors.ConfigError` at once. With
    ``check=True`` (default) a failed transfer raises :class:`HTTPStatusError`,
    :class:`IncompleteTransfer`, :class:`DigestMismatch` or :class:`FetchError`;
    with ``check=False`` the result carries ``exit_code`` and ``error`` instead.
    """
    parts = parse_url(url)
    rate = parse_rate(limit_rate) if isinstance(limit_rate, str) else limit_rate
    if rate is not None and (rate <= 0 or not math.isfinite(rate)):
        raise ConfigError(f"bad rate {rate!r}: must be a finite number of bytes per second > 0")
    plan = _build_schedule(schedule, pause_after, pause_for)
    if rcvbuf is not None and rcvbuf <= 0:
        raise ConfigError(f"bad rcvbuf {rcvbuf}: must be more than 0 bytes")
    if not timeout > 0:
        raise ConfigError(f"bad timeout {timeout}: must be more than 0 s")
    out = Path(output) if output is not None else None
    if out is not None:
        _check_output(out)
    elif resume:
        raise ConfigError("resume needs an output file")
    if mss is not None and mss != 0 and not 88 <= mss <= 65535:
        raise ConfigError(f"bad mss {mss}: must be from 88 to 65535 bytes (0 = kernel default)")
    if rcvbuf is None:
        rcvbuf = default_rcvbuf(rate)
        if rcvbuf is None and plan.events:
            rcvbuf = PAUSE_RCVBUF
    paced = rate is not None or bool(plan.events)
    if mss is None and paced:
        mss = PACED_MSS
    elif mss == 0:
        mss = None
    options = _Options(
        url=url.strip(),
        parts=parts,
        output=out,
        rate=rate,
        schedule=plan,
        resume=resume,
        verify=verify,
        rcvbuf=rcvbuf,
        mss=mss,
        timeout=timeout,
        headers=list(headers),
        on_progress=on_progress,
    )
    result = await _run(options, counters or FetchCounters())
    if check:
        _raise_for(result)
    return result


def _raise_for(result: FetchResult) -> None:
    errors: dict[ExitCode, type[FetchError]] = {
        ExitCode.HTTP_STATUS: HTTPStatusError,
        ExitCode.INCOMPLETE: IncompleteTransfer,
        ExitCode.DIGEST_MISMATCH: DigestMismatch,
    }
    if result.exit_code != ExitCode.OK:
        raise errors.get(result.exit_code, FetchError)(result.error or "fetch failed")
