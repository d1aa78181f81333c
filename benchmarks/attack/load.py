"""Load, aborts and a crash: many downloads at once, many reset streams, kill -9.

* :func:`downloads`: N concurrent downloads, every byte checked.
* :func:`aborts`: N streams each reset (``RST``) by its client after a few bytes; the
  server's fds must come back to their baseline and no ledger record may stay
  ``streaming``.
* :func:`kill9`: transfers run in rounds; in each, the server is killed with SIGKILL
  a random 0-100 ms after a client received a whole body; after a restart on the
  same database, every transfer whose client saw its whole body must read
  ``completed`` (``GET /transfers/{id}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.attack.badinput import Outcome, generated
from benchmarks.attack.rawhttp import exchange, request_bytes


async def downloads(port: int, n: int, size: int = 256 << 10, chunk: int = 64 << 10) -> Outcome:
    """``n`` downloads of ``/download`` at once; each body must be byte-exact."""
    out = Outcome()
    want = generated(size, chunk)
    target = f"/download?size={size}&chunk={chunk}"

    async def one() -> None:
        try:
            reply = await exchange(port, request_bytes("GET", target), patience=120)
        except Exception as exc:
            out.fail(f"{type(exc).__name__}: {exc}")
            return
        out.cases += 1
        if reply.status != 200 or reply.body != want:
            out.fail(f"status {reply.status}, {len(reply.body)} bytes, exact={reply.body == want}")

    await asyncio.gather(*(one() for _ in range(n)))
    return out


async def _reset_after_headers(port: int, target: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("GET", target))
    await reader.readuntil(b"\r\n\r\n")
    await reader.read(1024)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # close now with SO_LINGER 0: an RST, not a FIN


@dataclass
class AbortFigures:
    """What the aborts left behind."""

    outcome: Outcome
    fds_before: int = 0
    fds_peak: int = 0
    fds_after: int = 0
    threads_before: int = 0
    threads_after: int = 0
    streaming_records: int = -1
    settle_seconds: float = 0.0


async def aborts(
    port: int, ps: psutil.Process, db: Path, n: int, concurrency: int = 200
) -> AbortFigures:
    """``n`` streams reset by their client; then fds, threads and ledger records."""
    figures = AbortFigures(Outcome(), ps.num_fds(), 0, 0, ps.num_threads())
    sem = asyncio.Semaphore(concurrency)
    target = "/download?size=64M&chunk=64K"

    async def one() -> None:
        async with sem:
            try:
                await _reset_after_headers(port, target)
                figures.outcome.cases += 1
            except Exception as exc:
                figures.outcome.fail(f"{type(exc).__name__}: {exc}")
            figures.fds_peak = max(figures.fds_peak, ps.num_fds())

    await asyncio.gather(*(one() for _ in range(n)))
    start = time.monotonic()
    while time.monotonic() - start < 15:
        figures.fds_after = ps.num_fds()
        if figures.fds_after <= figures.fds_before + 2:
            break
        await asyncio.sleep(0.2)
    figures.settle_seconds = time.monotonic() - start
    figures.threads_after = ps.num_threads()
    await asyncio.sleep(1.5)  # the ledger commits in groups: let the last finish land
    figures.streaming_records = _count(db, "SELECT count(*) FROM transfers WHERE state='streaming'")
    if figures.fds_after > figures.fds_before + 2:
        figures.outcome.fail(f"fds {figures.fds_before} before, {figures.fds_after} after")
    if figures.streaming_records:
        figures.outcome.fail(f"{figures.streaming_records} records still streaming")
    return figures


def _count(db: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@dataclass
class KillFigures:
    """What survived the crashes."""

    rounds: int = 0
    whole_bodies: int = 0
    completed: int = 0
    not_completed: dict[str, int] = field(default_factory=dict)
    delays_ms: list[float] = field(default_factory=list)


async def kill9_round(port: int, pid: int, transfers: int, rng: random.Random) -> list[str]:
    """Downloads run back to back (20 at a time, ``transfers`` at most) until the server
    is killed with SIGKILL, 0.2-0.6 s after the first completed: completions are then
    arriving every few milliseconds, so the kill lands 0-100 ms after many of them.

    Returns the transfer ids whose client received the whole body.
    """
    whole: list[str] = []
    target = "/download?size=16K&chunk=4K"
    want = generated(16 << 10, 4 << 10)
    first_done = asyncio.Event()
    killed = False
    started = 0

    async def worker() -> None:
        nonlocal started
        while not killed and started < transfers:
            started += 1
            try:
                reply = await exchange(port, request_bytes("GET", target), patience=10)
            except Exception:
                continue
            if reply.status == 200 and reply.complete and reply.body == want:
                whole.append(reply.header("transfer-id"))
                first_done.set()

    workers = [asyncio.create_task(worker()) for _ in range(20)]
    await first_done.wait()
    await asyncio.sleep(rng.uniform(0.2, 0.6))
    killed = True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await asyncio.gather(*workers, return_exceptions=True)
    return [t for t in whole if t]


async def read_states(port: int, ids: list[str]) -> dict[str, str]:
    """``GET /transfers/{id}`` for each id: its state, or the HTTP status if none."""
    states: dict[str, str] = {}
    sem = asyncio.Semaphore(50)

    async def one(tid: str) -> None:
        async with sem:
            reply = await exchange(port, request_bytes("GET", f"/transfers/{tid}"))
        if reply.status == 200:
            import json

            states[tid] = json.loads(reply.body).get("state", "?")
        else:
            states[tid] = f"HTTP {reply.status}"

    await asyncio.gather(*(one(t) for t in ids))
    return states
