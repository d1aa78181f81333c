"""The server × framework matrix: start a server kind, run the four checks on a cell.

Shared by the tests (``test_matrix.py``, which assert) and by
``python -m tests.stacks.compat`` (which writes ``docs/compatibility.md``).

The checks, each one small request with a real client (curl; with
``--http2-prior-knowledge`` for h2c):

* **intact**: ``/<fw>/body`` arrives byte for byte (SHA-256 compared);
* **closed**: the client of ``/<fw>/endless/<token>`` is killed; the producer's
  ``finally`` must run within :data:`CLOSE_WITHIN` seconds; we also count the chunks
  it made after the client left;
* **failure**: curl's exit code for ``/<fw>/fail`` (18: HTTP/1.1 body incomplete;
  92: HTTP/2 stream reset; 16 or 56: HTTP/2 connection closed); 0 means the failure
  passed for a whole body;
* **memory**: ``/<fw>/big`` (5 chunks of 4 MiB) to curl reading at 16 MiB/s while the
  server's RSS is sampled every 5 ms; peak above the start, in chunks.

Servers run with ``MALLOC_MMAP_THRESHOLD_`` fixed so that glibc returns every freed
chunk at once: RSS then counts chunks alive, not the allocator's caching.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.servers import free_port, stop, wait_for_port
from tests.stacks import producers

ROOT = Path(__file__).resolve().parents[2]

#: server kind -> (the module it needs, HTTP/2 with prior knowledge)
SERVERS: dict[str, tuple[str, bool]] = {
    "uvicorn-httptools": ("uvicorn", False),
    "uvicorn-h11": ("uvicorn", False),
    # uvicorn's optional HTTP/2 (the zttp package): HTTP/1.1 and h2c on one port
    "uvicorn-h2c": ("zttp", True),
    "hypercorn-h1": ("hypercorn", False),
    "hypercorn-h2c": ("hypercorn", True),
    "granian-h1": ("granian", False),
    "granian-h2c": ("granian", True),
    "aiohttp": ("aiohttp", False),
    "aiohttp-cancel": ("aiohttp", False),
}

#: the frameworks each server kind runs (aiohttp is its own server)
ASGI_FRAMEWORKS = ("asgi", "starlette", "fastapi", "fastapi-mw", "litestar", "quart", "django")


def frameworks(server: str) -> tuple[str, ...]:
    """The frameworks ``server`` serves in the matrix."""
    return ("aiohttp",) if server.startswith("aiohttp") else ASGI_FRAMEWORKS


#: uvicorn's protocol that speaks HTTP/1.1 and HTTP/2 (with zttp installed)
UVICORN_HTTP2 = "uvicorn.protocols.http.auto_zttp_impl:AutoZttpProtocol"

CLOSE_WITHIN = 2.0
READ_RATE = "16M"


@dataclass
class Server:
    """A running server process of one kind."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    h2: bool
    #: for the server's own endpoints (``/_state``), in the protocol it speaks
    client: httpx.Client

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def command(kind: str, port: int) -> list[str]:
    """The command line that serves the matrix app on ``kind``."""
    app = "tests.stacks.matrix_app:app"
    py = sys.executable
    if kind.startswith("uvicorn"):
        http = kind.split("-")[1]
        if http == "h2c":
            http = UVICORN_HTTP2
        return [py, "-m", "uvicorn", app, "--port", str(port), "--http", http,
                "--lifespan", "off", "--log-level", "error"]  # fmt: skip
    if kind.startswith("hypercorn"):
        return [py, "-m", "hypercorn", app, "--bind", f"127.0.0.1:{port}",
                "--log-level", "error"]  # fmt: skip
    if kind.startswith("granian"):
        http = "2" if kind.endswith("h2c") else "1"
        return [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--http", http, "--log-level", "error",
                "--no-ws", app]  # fmt: skip
    cmd = [py, "-m", "tests.stacks.aiohttp_app", "--port", str(port)]
    return [*cmd, "--handler-cancellation"] if kind == "aiohttp-cancel" else cmd


@contextlib.contextmanager
def serving(kind: str) -> Iterator[Server]:
    """Run a fresh server of ``kind``; stop it afterwards (only the process we started)."""
    port = free_port()
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        command(kind, port),
        cwd=ROOT,
        env=env,
        # Not a pipe: the failure checks make tracebacks, and a full pipe stalls a server.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(proc, port, kind, timeout=60)
        h2 = SERVERS[kind][1]
        with httpx.Client(http1=not h2, http2=h2, timeout=10) as client:
            yield Server(kind, port, proc, h2, client)
    finally:
        stop(proc)


def curl(server: Server, path: str, *extra: str, out: str = os.devnull) -> list[str]:
    """A curl command for ``path`` on ``server`` (h2c with prior knowledge if it speaks it)."""
    cmd = ["curl", "-sS", "--max-time", "60", "-o", out, *extra]
    if server.h2:
        cmd.append("--http2-prior-knowledge")
    return [*cmd, server.base + path]


def check_intact(server: Server, framework: str, tmp: Path) -> bool:
    """The body arrives byte for byte."""
    out = tmp / f"{framework}-body"
    result = subprocess.run(curl(server, f"/{framework}/body", out=str(out)), timeout=90)
    if result.returncode != 0 or not out.exists():
        return False
    return hashlib.sha256(out.read_bytes()).hexdigest() == producers.body_digest()


def state(server: Server, token: str) -> dict[str, float]:
    """An endless producer's record, from the server."""
    response = server.client.get(f"{server.base}/_state/{token}")
    response.raise_for_status()
    data: dict[str, float] = json.loads(response.content)
    return data


@dataclass(frozen=True)
class Closing:
    """What happened to a producer after its client was killed."""

    #: seconds from the kill to the producer's ``finally`` (None: not within the wait)
    seconds: float | None
    #: chunks it made after the kill
    made_after: int


def check_closed(server: Server, framework: str) -> Closing:
    """Kill a client mid-stream; see when the producer is closed."""
    token = uuid.uuid4().hex
    client = subprocess.Popen(
        curl(server, f"/{framework}/endless/{token}", "--limit-rate", "1M"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while state(server, token).get("made", 0) < 4:
            if time.monotonic() > deadline:
                raise RuntimeError("the endless producer never started")
            time.sleep(0.05)
        made = state(server, token)["made"]
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    killed = time.time()
    deadline = time.monotonic() + CLOSE_WITHIN + 3
    record = state(server, token)
    while record.get("closed_at") is None and time.monotonic() < deadline:
        time.sleep(0.02)
        record = state(server, token)
    closed_at = record.get("closed_at")
    seconds = None if closed_at is None else max(0.0, closed_at - killed)
    return Closing(seconds, int(record["made"] - made))


def check_failure(server: Server, framework: str, tmp: Path) -> tuple[int, int]:
    """curl's exit code for a failure after the head, and the bytes it got."""
    out = tmp / f"{framework}-fail"
    result = subprocess.run(
        curl(server, f"/{framework}/fail", out=str(out)), timeout=90, capture_output=True
    )
    return result.returncode, out.stat().st_size if out.exists() else 0


def check_memory(server: Server, framework: str) -> float:
    """Peak server RSS above its start while a slow client reads ``big``, in chunks."""
    # hypercorn and granian serve from child processes: count the whole tree.
    root = psutil.Process(server.proc.pid)
    tree = [root, *root.children(recursive=True)]
    base = _rss(tree)
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss(tree))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        subprocess.run(
            curl(server, f"/{framework}/big", "--limit-rate", READ_RATE), timeout=120, check=False
        )
    finally:
        done.set()
        sampler.join(5)
    return (peak - base) / producers.BIG_CHUNK


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


CHECKS = ("intact", "closed", "failure", "memory")

#: A failure curl must report: HTTP/1.1 cuts the body (18), HTTP/2 resets the stream
#: (92) or closes the connection, which curl reports as 16, 18 or 56.
FAILURE_EXITS = {16, 18, 56, 92}
#: "About one chunk": the chunk being sent plus what the server and sluicegate buffer.
MAX_CHUNKS = 1.6

#: Known reasons a check fails, by (server kind, framework or "*", check): the test
#: expects the failure (xfail) and the table shows the reason.
_BASE_HTTP = "Starlette's BaseHTTPMiddleware ends a failed body cleanly and holds a second chunk"
KNOWN: dict[tuple[str, str, str], str] = {
    ("*", "fastapi-mw", "failure"): _BASE_HTTP,
    ("*", "fastapi-mw", "memory"): _BASE_HTTP,
}
#: Cells not run at all, because they would only wait for a timeout: the reason.
HANGS: dict[tuple[str, str], str] = {
    ("uvicorn-h2c", "django"): "uvicorn's HTTP/2 (zttp 0.0.35) never sends http.request for "
    "a request without a body; Django waits for it before routing",
}


def known(server: str, framework: str, check: str) -> str | None:
    """Why ``check`` is expected to fail on this cell, or None."""
    return (
        HANGS.get((server, framework))
        or KNOWN.get((server, framework, check))
        or KNOWN.get((server, "*", check))
        or KNOWN.get(("*", framework, check))
    )


def check_trailers(server: Server) -> bool:
    """The ``Repr-Digest`` trailer reaches curl (which asks with ``TE: trailers``)."""
    result = subprocess.run(
        curl(server, "/asgi/digest", "-H", "TE: trailers", "-D", "-"),
        capture_output=True,
        timeout=60,
    )
    _head, _, after = result.stdout.partition(b"\r\n\r\n")
    return b"repr-digest:" in after.lower()


def caveats_seen(server: Server) -> dict[str, int]:
    """What :mod:`sluicegate.engine.caveats` counted in the server."""
    response = server.client.get(f"{server.base}/_caveats")
    response.raise_for_status()
    data: dict[str, int] = json.loads(response.content)
    return data


@dataclass
class Result:
    """One check's outcome on one cell: passed or not, and what was measured."""

    check: str
    passed: bool
    #: the measurement, as the table shows it
    shown: str
    #: an error the check itself ran into (the server crashed mid-way, say)
    error: str | None = None


def run_check(server: Server, framework: str, check: str, tmp: Path) -> Result:
    """Run one check; an exception is a failed check, not a crashed run."""
    if (server.kind, framework) in HANGS:
        return Result(check, False, "hangs", error=HANGS[(server.kind, framework)])
    try:
        if check == "intact":
            ok = check_intact(server, framework, tmp)
            return Result(check, ok, "yes" if ok else "**no**")
        if check == "closed":
            closing = check_closed(server, framework)
            ok = closing.seconds is not None and closing.seconds <= CLOSE_WITHIN
            when = "never" if closing.seconds is None else f"{closing.seconds * 1000:.0f} ms"
            return Result(check, ok, f"{when}, {closing.made_after} more")
        if check == "failure":
            code, got = check_failure(server, framework, tmp)
            ok = code in FAILURE_EXITS and got < 3 * producers.FAIL_CHUNK
            return Result(check, ok, f"curl {code}")
        peak = check_memory(server, framework)
        return Result(check, peak <= MAX_CHUNKS, f"{peak:.1f}")
    except Exception as exc:  # the cell's verdict, whatever broke
        return Result(check, False, "**error**", error=repr(exc)[:300])
