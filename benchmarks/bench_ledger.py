"""What the transfer ledger costs per transfer, and what that adds to a small response.

Run ``python benchmarks/bench_ledger.py`` (``--help`` for options). It measures, for the
SQLite backend and (when ``redis-server`` is on PATH, or ``--redis-url`` is given) the
Redis backend:

* ``latency``: one ``begin`` + ``finish`` at a time, each awaited: how long ``finish``
  keeps a stream's task alive (for SQLite mostly ``commit_delay``);
* ``cpu``: CPU time per transfer (every thread of the process, the loop's bookkeeping
  subtracted) with 100 transfers in flight: what the ledger costs a busy server.

Then it serves a 1 KiB StreamResponse from uvicorn (in a subprocess, so client and
server do not share a GIL) with and without the ledger around it, and prints the
difference per request: the figure the "ledger adds at most 10 %" target is about. It
does so with ``commit_before_end`` on (the default: the end of each response waits for
its record's commit) and off (the record follows the end), so that the price of the
guarantee shows. ``--concurrency N`` keeps N requests in flight instead of one, which
is where commits and round trips are shared.

``--in-process`` drives the same app straight through ASGI (no server, no socket, no
client; uvloop when installed) and prints the CPU each response costs with and without
the ledger: the figure a busy shared machine disturbs least.

``--floor`` adds the same comparisons with a ledger that records nothing (its ``begin``
returns a new id, its ``finish`` returns at once): what a recorded response costs before
any store is involved (the ``Transfer-Id`` and ``Link`` headers, the digest, the end
gate's extra message). No backend can add less than that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from sluicegate import StreamResponse
from sluicegate.ledger import Ledger, SQLiteLedger, digest_of, new_transfer_id
from sluicegate.ledger.model import Receipt, TransferRecord, TransferState

SMALL = b"x" * 1024
#: seconds after a round's last request before its server CPU is read (see http_overhead)
SETTLE = 0.3
SMALL_DIGEST = digest_of(SMALL)


async def _latency(ledger: Ledger, n: int) -> float:
    """Wall µs of one ``begin`` + ``finish``, each awaited, one transfer at a time."""
    start = time.perf_counter()
    for _ in range(n):
        tid = await ledger.begin("GET", "/small", size=len(SMALL))
        await ledger.finish(tid, "completed", len(SMALL), digest=SMALL_DIGEST)
    return (time.perf_counter() - start) / n * 1e6


async def _cost(ledger: Ledger, n: int, width: int) -> tuple[float, float]:
    """CPU µs (all threads of this process) and wall µs per transfer, ``width`` in flight.

    CPU is the honest cost: wall time per transfer shrinks with concurrency, and on a
    virtual machine every thread wake-up costs tens of µs of CPU that wall time hides.
    """

    async def one() -> None:
        tid = await ledger.begin("GET", "/small", size=len(SMALL))
        await asyncio.sleep(0)  # the body goes out here
        await ledger.finish(tid, "completed", len(SMALL), digest=SMALL_DIGEST)

    cpu, wall = time.process_time(), time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for _ in range(n):
        pending.add(asyncio.create_task(one()))
        await asyncio.sleep(0)
        if len(pending) >= width:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def _null_cost(n: int, width: int) -> float:
    """CPU µs per iteration of :func:`_cost`'s loop without a ledger, to subtract."""

    class Null(SQLiteLedger):
        async def begin(self, method: str, path: str, *, size: int | None = None) -> str:
            return "A" * 22

        async def finish(self, *args: Any, **kwargs: Any) -> None:
            pass

    cpu, _ = await _cost(Null(Path("unused")), n, width)
    return cpu


class NullLedger(Ledger):
    """A ledger that records nothing: the floor of what recording a response costs."""

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def begin(self, method: str, path: str, *, size: int | None = None) -> str:
        return new_transfer_id()

    async def progress(self, transfer_id: str, bytes_sent: int) -> None:
        pass

    async def finish(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def get(self, transfer_id: str) -> TransferRecord:
        raise NotImplementedError

    async def _attach_receipt(
        self, transfer_id: str, expected: TransferState, receipt: Receipt
    ) -> bool:
        raise NotImplementedError


async def measure(make: Callable[[], Ledger], n: int) -> dict[str, float]:
    """Latency, and CPU and wall time per transfer with 100 transfers in flight."""
    async with make() as ledger:
        await _cost(ledger, min(n, 1000), 100)  # warm up: schema, caches, pool
        out = {"latency_us": await _latency(ledger, min(n, 300))}
        cpu, wall = await _cost(ledger, n, 100)
        out["cpu_us"] = cpu - await _null_cost(n, 100)
        out["wall_us"] = wall
        return out


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free port, or None if there is none to start."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [
                exe,
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", workdir),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


# -- the end-to-end comparison ---------------------------------------------------------


def make_app(ledger: Ledger) -> Any:
    """Two endpoints streaming the same 1 KiB in two chunks; one records it in the ledger."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    # Both endpoints are the same StreamResponse; one records its transfer in the ledger
    # (begin, digest of what was sent, finish) exactly as an application would.
    def parts() -> Any:
        async def gen() -> AsyncIterator[bytes]:
            yield SMALL[:512]
            yield SMALL[512:]

        return gen()

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamResponse(parts(), ledger=None)(scope, receive, send)

    async def ledgered(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamResponse(parts(), ledger=ledger)(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with ledger:
            yield

    class Endpoint:  # a class, so that Starlette treats it as a raw ASGI app
        def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    return Starlette(
        routes=[Route("/plain", Endpoint(plain)), Route("/ledgered", Endpoint(ledgered))],
        lifespan=lifespan,
    )


def _serve(where: str, port: int, commit_delay: float, before_end: bool) -> None:
    import uvicorn

    ledger: Ledger
    if where == "null":
        ledger = NullLedger(commit_before_end=before_end)
    elif where.startswith("redis://"):
        from sluicegate.ledger.redis import RedisLedger

        ledger = RedisLedger(
            where,
            prefix=f"bench-http:{time.time_ns()}:",
            max_age=600,
            commit_before_end=before_end,
        )
    else:
        ledger = SQLiteLedger(where, commit_delay=commit_delay, commit_before_end=before_end)
    uvicorn.run(make_app(ledger), host="127.0.0.1", port=port, log_level="warning")


def http_overhead(
    n: int,
    commit_delay: float = 0.005,
    redis_url: str | None = None,
    before_end: bool = True,
    concurrency: int = 1,
) -> dict[str, float]:
    """Per request on uvicorn, /plain against /ledgered, keep-alive, taken in turns.

    The ledger is SQLite in a temporary file, or Redis at ``redis_url``, or with
    ``redis_url="null"`` the :class:`NullLedger` (``--floor``).

    Wall time is what the client sees; server CPU time (all threads, from psutil) is what
    the ledger costs the server, and is much less disturbed by other load on the machine.
    Each round's CPU is read ``SETTLE`` seconds after its last request, so that work a
    ledger defers (SQLite folds its journal 0.25 s later) is charged to the path that
    caused it, not to the next round; the wall time leaves the pause out.
    With ``concurrency`` > 1 that many requests are in flight at once (wall time is then
    per request of the whole batch), which is where group commit shares commits.
    """
    import psutil  # type: ignore[import-untyped]

    port = _free_port()
    rounds = 10  # alternate, so that drift in machine load hits both alike
    per_round = max(1, n // rounds)
    with tempfile.TemporaryDirectory() as tmp:
        where = redis_url or str(Path(tmp) / "bench.db")
        server = subprocess.Popen(
            [
                *(sys.executable, __file__, "--serve", where, str(port)),
                *(str(commit_delay), "1" if before_end else "0"),
            ]
        )
        try:
            _wait_for_port(port)
            proc = psutil.Process(server.pid)
            wall = {"plain": 0.0, "ledgered": 0.0}
            cpu = {"plain": 0.0, "ledgered": 0.0}
            base = f"http://127.0.0.1:{port}"
            run = _serial(base) if concurrency <= 1 else _concurrent(base, concurrency)
            with run as get_many:
                for path in wall:  # warm up
                    get_many(f"/{path}", 200)
                for _ in range(rounds):
                    for path in wall:
                        before = proc.cpu_times()
                        start = time.perf_counter()
                        get_many(f"/{path}", per_round)
                        wall[path] += time.perf_counter() - start
                        time.sleep(SETTLE)
                        after = proc.cpu_times()
                        cpu[path] += after.user + after.system - before.user - before.system
        finally:
            server.terminate()
            server.wait(10)
    total = per_round * rounds
    out = {f"{k}_wall_us": v / total * 1e6 for k, v in wall.items()}
    out |= {f"{k}_server_cpu_us": v / total * 1e6 for k, v in cpu.items()}
    out["added_wall_percent"] = (wall["ledgered"] / wall["plain"] - 1) * 100
    out["added_server_cpu_percent"] = (cpu["ledgered"] / cpu["plain"] - 1) * 100
    return out


@contextlib.contextmanager
def _serial(base: str) -> Iterator[Callable[[str, int], None]]:
    """``get_many(path, n)``: n GETs one after the other on one keep-alive connection."""
    import httpx

    with httpx.Client(base_url=base) as client:

        def get_many(path: str, n: int) -> None:
            for _ in range(n):
                client.get(path).raise_for_status()

        yield get_many


@contextlib.contextmanager
def _concurrent(base: str, width: int) -> Iterator[Callable[[str, int], None]]:
    """``get_many(path, n)``: n GETs, ``width`` in flight at once, from one event loop."""
    import httpx

    loop = asyncio.new_event_loop()
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    client = httpx.AsyncClient(base_url=base, limits=limits)

    async def many(path: str, n: int) -> None:
        left = [n]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                (await client.get(path)).raise_for_status()

        await asyncio.gather(*(worker() for _ in range(width)))

    try:
        yield lambda path, n: loop.run_until_complete(many(path, n))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


# -- the same comparison in process: no server, no socket, no client -----------------


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "extensions": {},
    }


async def _drive(app: Any, path: str, n: int) -> None:
    """``n`` requests to ``path``, one after the other, straight into the ASGI app."""

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        await asyncio.sleep(0)  # a server hands each message to its transport

    for _ in range(n):
        await app(_scope(path), receive, send)


async def in_process(make: Callable[[], Ledger], n: int, rounds: int) -> dict[str, float]:
    """CPU µs per 1 KiB response, /plain against /ledgered, driving the ASGI app in process.

    The same app as the uvicorn comparison, one request at a time, the paths taken in
    turns for ``rounds`` rounds (median reported). Without a server or a client on the
    same two cores, this isolates what the ledger adds to a response's CPU (all threads
    of the process; a Redis server's own CPU is not in it).
    """
    ledger = make()
    app = make_app(ledger)
    cpu: dict[str, list[float]] = {"plain": [], "ledgered": []}
    async with ledger:
        for path in cpu:  # warm up
            await _drive(app, f"/{path}", min(n, 300))
        for _ in range(rounds):
            for path, runs in cpu.items():
                start = time.process_time()
                await _drive(app, f"/{path}", n)
                # What the ledger deferred (SQLite's journal fold) is charged to its path.
                await ledger.flush()
                runs.append((time.process_time() - start) / n * 1e6)
    plain, ledgered = statistics.median(cpu["plain"]), statistics.median(cpu["ledgered"])
    return {"plain_cpu_us": plain, "ledgered_cpu_us": ledgered, "added_cpu_us": ledgered - plain}


def _run_in_process(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import uvloop  # what uvicorn runs on when it is installed

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        db = Path(tmp) / "bench.db"
        if args.floor:
            results["floor"] = asyncio.run(in_process(NullLedger, args.requests, 5))
        results["sqlite"] = asyncio.run(in_process(lambda: SQLiteLedger(db), args.requests, 5))
        url = args.redis_url or stack.enter_context(redis_server())
        if url is not None:
            from sluicegate.ledger.redis import RedisLedger

            prefix = f"bench-inproc:{time.time_ns()}:"
            results["redis"] = asyncio.run(
                in_process(lambda: RedisLedger(url, prefix=prefix, max_age=600), args.requests, 5)
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"1 KiB StreamResponse in process, {args.requests} requests per path x 5 rounds")
    for name, row in results.items():
        print(
            f"  {name:7} CPU per response  plain {row['plain_cpu_us']:6.1f} µs"
            f"   ledgered {row['ledgered_cpu_us']:6.1f} µs   added {row['added_cpu_us']:+6.1f} µs"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="transfers per measurement")
    parser.add_argument("--requests", type=int, default=10_000, help="HTTP requests per path")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--no-http", action="store_true", help="skip the uvicorn comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--commit-delay", type=float, default=0.005, help="SQLiteLedger commit_delay (seconds)"
    )
    parser.add_argument(
        "--late-only",
        action="store_true",
        help="measure only commit_before_end=False (by default both, the default first)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight in the HTTP comparison"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only CPU per response, driving the app in process (no server, no client)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure a ledger that records nothing (what any backend adds at least)",
    )
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), float(args.serve[2]), args.serve[3] == "1")
        return 0
    if args.in_process:
        return _run_in_process(args)
    modes = [False] if args.late_only else [True, False]
    width = max(1, args.concurrency)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        results["sqlite"] = asyncio.run(
            measure(lambda: SQLiteLedger(db, commit_delay=args.commit_delay), args.n)
        )
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        if url is None:
            results["redis"] = None
        else:
            from sluicegate.ledger.redis import RedisLedger

            prefix = f"bench:{time.time_ns()}:"
            results["redis"] = asyncio.run(
                measure(lambda: RedisLedger(url, prefix=prefix, max_age=600), args.n)
            )
        if not args.no_http:
            for before_end in modes:
                tag = "" if before_end else "_late"
                if args.floor:
                    results["http_floor" + tag] = http_overhead(
                        args.requests, args.commit_delay, "null", before_end, width
                    )
                results["http" + tag] = http_overhead(
                    args.requests, args.commit_delay, before_end=before_end, concurrency=width
                )
                if url is not None:
                    results["http_redis" + tag] = http_overhead(
                        args.requests, args.commit_delay, url, before_end, width
                    )

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"ledger cost per transfer (begin + finish), n={args.n}")
    for backend in ("sqlite", "redis"):
        row = results[backend]
        if row is None:
            print(f"  {backend:7} skipped: redis-server not on PATH (or pass --redis-url)")
        else:
            print(
                f"  {backend:7} CPU {row['cpu_us']:6.1f} µs   wall {row['wall_us']:6.1f} µs"
                f"  (100 in flight)   finish latency {row['latency_us']:7.1f} µs"
            )
    for key, name in (
        ("http_floor", "null"),
        ("http", "SQLite"),
        ("http_redis", "Redis"),
        ("http_floor_late", "null"),
        ("http_late", "SQLite"),
        ("http_redis_late", "Redis"),
    ):
        if key not in results:
            continue
        h = results[key]
        mode = "commit_before_end=False" if key.endswith("_late") else "commit_before_end=True"
        print(
            f"1 KiB StreamResponse on uvicorn, {args.requests} requests per path,"
            f" {width} in flight, {name}, {mode}"
        )
        print(
            f"  client wall  plain {h['plain_wall_us']:7.1f} µs   with {name} ledger"
            f" {h['ledgered_wall_us']:7.1f} µs   added {h['added_wall_percent']:+5.1f} %"
        )
        print(
            f"  server CPU   plain {h['plain_server_cpu_us']:7.1f} µs   with {name} ledger"
            f" {h['ledgered_server_cpu_us']:7.1f} µs"
            f"   added {h['added_server_cpu_percent']:+5.1f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
