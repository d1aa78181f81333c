"""Run the demo's cases: each server under the doctor, loaded by the slow client.

For every :class:`~sluicegate.demo.plan.Case` a fresh server starts (a fresh
process, so one run's allocator high-water mark cannot hide the next one's growth):

* ``python``: ``uvicorn sluicegate.demo.app:app`` under
  :func:`~sluicegate.doctor.run.run_doctor`, whose in-process probe samples RSS every
  10 ms and the kernel send queues every 100 ms;
* ``node``: ``node demo/node/<file>.js`` under the same orchestration; the probe
  cannot enter Node, so :class:`ProcessSampler` reads the same two quantities from
  outside (psutil RSS, ``/proc/net/tcp`` ``tx_queue``: both the kernel's
  ``write_seq - snd_una``, as the probe's ``SIOCOUTQ``).

The load is :mod:`sluicegate.demo.load` as the doctor's ``--on-port`` command, the
way the article runs ``curl --limit-rate 10M`` under ``clinic doctor --on-port``.

:func:`hello_trace` shows the article's ``curl --trace``: the raw bytes of each
``recv()`` on a plain socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from sluicegate.demo.plan import NODE_FILES, Case
from sluicegate.doctor.errors import DoctorError
from sluicegate.doctor.run import DoctorConfig, RunResult, listening_port, run_doctor
from sluicegate.doctor.samples import Event, Sample, Trace

__all__ = [
    "NODE_DIR",
    "CaseRun",
    "PacketTrace",
    "ProcessSampler",
    "Recv",
    "data_segments_in",
    "hello_trace",
    "node_available",
    "packet_trace",
    "proc_net_tcp_send_queue",
    "run_case",
    "server_command",
    "started_server",
]

#: The Node servers, in the repository (``demo/node``).
NODE_DIR = Path(__file__).resolve().parents[3] / "demo" / "node"

_PYTHON_SERVER = [
    "-m",
    "uvicorn",
    "sluicegate.demo.app:app",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--log-level",
    "warning",
    "--no-access-log",
    "--lifespan",
    "off",
]


def node_available() -> str | None:
    """Why Node servers cannot run here, or None when they can."""
    import shutil

    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (NODE_DIR / NODE_FILES["generator"]).is_file():
        return f"the Node servers are not at {NODE_DIR} (run from a clone of the repository)"
    return None


def server_command(server: str, scenario: str) -> list[str]:
    """The command that starts ``server``'s implementation of ``scenario`` on a free port."""
    if server == "python":
        return [sys.executable, *_PYTHON_SERVER]
    return ["node", str(NODE_DIR / NODE_FILES[scenario]), "0", "--quiet"]


# -- the outside sampler (for Node) -------------------------------------------------------


def proc_net_tcp_send_queue(text: str, port: int) -> int:
    """Sum ``tx_queue`` of the established sockets whose local port is ``port``.

    ``text`` is ``/proc/net/tcp`` (or ``tcp6``)::

        >>> line = "0: 0100007F:1F90 0100007F:D2A4 01 0001F000:00000000 00:0 0 0"
        >>> proc_net_tcp_send_queue("header\\n" + line, 8080)
        126976
    """
    total = 0
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5 or parts[3] != "01":  # 01: ESTABLISHED
            continue
        try:
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            tx = int(parts[4].split(":", 1)[0], 16)
        except (IndexError, ValueError):
            continue
        if local_port == port:
            total += tx
    return total


class ProcessSampler:
    """Sample a process's RSS (and its port's kernel send queue) from outside, in a thread.

    Produces :class:`~sluicegate.doctor.samples.Sample` records like the doctor's probe,
    so a Node server's run becomes a :class:`~sluicegate.doctor.samples.Trace` too.
    """

    def __init__(self, pid: int, interval: float = 0.02, net_every: int = 5) -> None:
        self.pid = pid
        self.port: int | None = None
        self.interval = interval
        self.net_every = net_every
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _send_queue(self) -> int | None:
        if self.port is None:
            return None
        total = 0
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                total += proc_net_tcp_send_queue(Path(name).read_text(), self.port)
        return total

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        tick = 0
        while not self._stop.is_set():
            try:
                rss = int(proc.memory_info().rss)
            except psutil.Error:
                return
            sample = Sample(pid=self.pid, t=time.time(), rss=rss)
            if tick % self.net_every == 0:
                sample.send_queue = self._send_queue()
            self.samples.append(sample)
            tick += 1
            self._stop.wait(self.interval)


# -- one run -----------------------------------------------------------------------------


@dataclass(slots=True)
class CaseRun:
    """What one case's run produced: the trace, the client's JSON, a problem if any."""

    case: Case
    trace: Trace
    load: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    seconds: float = 0.0


def _load_command(case: Case, out: Path) -> str:
    args = [
        sys.executable,
        "-m",
        "sluicegate.demo.load",
        f"http://127.0.0.1:{{port}}{case.path}",
        "--out",
        str(out),
    ]
    if case.client_rate:
        args += ["--limit-rate", str(case.client_rate)]
    if case.window:
        args += ["--window", str(case.window)]
    if case.pause_for:
        args += ["--pause-after", str(case.pause_after or 0.0), "--pause-for", str(case.pause_for)]
    # {port} must survive quoting: the doctor fills it in the final string.
    return " ".join(shlex.quote(a) for a in args)


def run_case(
    case: Case,
    workdir: Path,
    *,
    idle: float = 0.7,
    on_event: Callable[[Event], None] | None = None,
) -> CaseRun:
    """Run ``case`` under the doctor; samples from the probe (Python) or outside (Node)."""
    workdir.mkdir(parents=True, exist_ok=True)
    load_out = workdir / "load.json"
    load_out.unlink(missing_ok=True)
    node = case.server == "node"
    sampler: list[ProcessSampler] = []

    def watch(event: Event) -> None:
        if node and event.kind == "server-start":
            s = ProcessSampler(int(event.detail))
            sampler.append(s)
            s.start()
        elif node and event.kind == "port-open" and sampler:
            sampler[0].port = int(event.detail)
        elif node and event.kind == "server-exit" and sampler:
            sampler[0].stop()
        if on_event is not None:
            on_event(event)

    config = DoctorConfig(
        command=server_command(case.server, case.scenario),
        on_port=_load_command(case, load_out),
        duration=case.expected_seconds * 2 + 30,
        idle=idle,
        grace=3.0,
        port_timeout=20.0,
        probe=not node,
        samples_dir=workdir / "samples",
    )
    t0 = time.monotonic()
    try:
        result: RunResult = run_doctor(config, on_event=watch)
    finally:
        for s in sampler:
            s.stop()
    trace = result.trace
    if node and sampler:
        trace.samples = sorted(sampler[0].samples, key=lambda s: s.t)
    run = CaseRun(case, trace, problem=result.problem, seconds=time.monotonic() - t0)
    if node and run.problem and run.problem.startswith("no samples"):
        run.problem = None
    try:
        run.load = json.loads(load_out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run.problem = run.problem or "the load command wrote no result"
    return run


# -- 01: hello, byte by byte ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recv:
    """What one ``recv()`` returned, split into the head part and the body part."""

    header: bytes
    data: bytes


@contextlib.contextmanager
def started_server(command: list[str], log: Path, timeout: float = 20.0) -> Iterator[int]:
    """Start a server command; yield its port once it listens; stop it by its pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while (port := listening_port(proc.pid)) is None:
            if proc.poll() is not None:
                raise DoctorError(f"{command[0]} exited with code {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise DoctorError(f"{' '.join(command)} opened no port within {timeout:g} s")
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def data_segments_in(sock: socket.socket) -> int | None:
    """TCP segments with data this socket received (Linux ``tcpi_data_segs_in``), if known."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    # struct tcp_info: tcpi_data_segs_in is the u32 at offset 152 (Linux >= 4.6).
    if len(info) < 156:
        return None
    return int.from_bytes(info[152:156], sys.byteorder)


@dataclass(frozen=True, slots=True)
class PacketTrace:
    """One response as a reader saw it: what each ``recv()`` returned, and how many
    TCP segments with data arrived (``None`` where Linux's ``TCP_INFO`` is missing)."""

    recvs: list[Recv]
    reads: int
    segments: int | None

    @property
    def kept_up(self) -> bool:
        """True when every segment was read on its own: the reads show the packets."""
        return self.segments is None or self.reads == self.segments


def hello_trace(port: int, path: str, timeout: float = 5.0) -> PacketTrace:
    """GET ``path``; return what each ``recv()`` brought (like curl --trace).

    The socket is polled without blocking, in a tight loop, for the few milliseconds
    the response takes: a blocking reader wakes up later than the next segment
    arrives and would merge two packets into one read.
    """
    recvs: list[Recv] = []
    head_done = False
    pending = b""
    reads = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n".encode())
        sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: no end of response within {timeout:g} s") from None
                continue
            if not data:
                break
            reads += 1
            if head_done:
                recvs.append(Recv(b"", data))
                continue
            pending += data
            end = pending.find(b"\r\n\r\n")
            if end >= 0:
                head_done = True
                recvs.append(Recv(pending[: end + 4], pending[end + 4 :]))
        segments = data_segments_in(sock)
    return PacketTrace(recvs, reads, segments)


def packet_trace(port: int, path: str, attempts: int = 20) -> PacketTrace:
    """:func:`hello_trace`, repeated (up to ``attempts``) until the reader kept up
    with the segments, so that each read shows one packet; else the last attempt.

    A reader on a busy machine can wake up after two segments have arrived and get
    both in one read: the segment count says how many packets there really were.
    """
    trace = hello_trace(port, path)
    for _ in range(attempts - 1):
        if trace.kept_up:
            break
        trace = hello_trace(port, path)
    return trace
