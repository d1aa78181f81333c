"""The in-process sampler the doctor injects into every Python process of a server.

The probe is a daemon thread. Every ``interval`` (10 ms by default) it

* pings each running asyncio loop with ``call_soon_threadsafe``: the time the ping
  waits before it runs is the **event-loop delay** (a blocked loop cannot run it);
  while a ping waits too long, it samples the loop thread's stack so the report can
  name the code that blocked;
* reads RSS and CPU time, and the GC pauses ``gc.callbacks`` measured since the
  last sample.

Every ``net_interval`` (100 ms by default) it also counts asyncio tasks, open fds
and established TCP connections, sums the **kernel send and receive queues** of the
process's TCP sockets (``SIOCOUTQ`` on each socket fd listed in ``/proc/self/fd``),
reads the system's TCP memory (``/proc/net/sockstat``), and copies
:func:`sluicegate.metrics.snapshot` when the application uses sluicegate.

Samples go as JSON lines to ``<out_dir>/<pid>.jsonl`` (one file per process, so forked
workers never interleave). The module uses the standard library only: the doctor loads
it by file path into servers that may not have sluicegate's dependencies. Linux gives
every field; elsewhere the ``/proc`` fields are missing.

Use it explicitly when injection is not possible::

    from sluicegate.doctor import probe
    probe.install("doctor-samples")   # before the loop starts, or from inside it
"""

from __future__ import annotations

import array
import asyncio
import atexit
import contextlib
import fcntl
import gc
import json
import os
import resource
import socket
import stat
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import IO, Any

#: Directory the probe writes ``<pid>.jsonl`` to (set by ``sluicegate doctor``).
ENV_OUT = "SLUICEGATE_DOCTOR_OUT"
#: Sampling interval in seconds (default 0.01).
ENV_INTERVAL = "SLUICEGATE_DOCTOR_INTERVAL"
#: Interval of the costlier socket/fd/task counts in seconds (default 0.1).
ENV_NET_INTERVAL = "SLUICEGATE_DOCTOR_NET_INTERVAL"
#: Loop delay in milliseconds after which the blocked thread's stack is sampled.
ENV_STACK_MS = "SLUICEGATE_DOCTOR_STACK_MS"

#: Version of the JSON-lines format written by this probe.
SCHEMA = 1

_SYS_KEY = "_sluicegate_doctor_probe"  # one probe per process, whichever module copy runs
_MAX_STACKS = 400
_FLUSH_EVERY = 0.25
# sockios.h / ioctls.h (Linux)
_SIOCOUTQ = 0x5411
_SIOCINQ = 0x541B


class _LoopWatch:
    """Ping state for one event loop (written by the probe thread and the loop)."""

    __slots__ = ("done", "last_stack_ms", "loop", "pending_since", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int | None) -> None:
        self.loop: weakref.ref[asyncio.AbstractEventLoop] = weakref.ref(loop)
        self.thread_id = thread_id
        self.pending_since: float | None = None
        # delays (seconds) of pings answered since the last sample
        self.done: list[float] = []
        self.last_stack_ms = 0.0

    def pong(self, sent: float) -> None:
        # Runs on the loop: as cheap as possible.
        self.done.append(time.perf_counter() - sent)
        self.thread_id = threading.get_ident()
        self.pending_since = None


class Probe:
    """The sampler of one process; create it with :func:`install`."""

    def __init__(
        self,
        out_dir: str,
        interval: float = 0.01,
        net_interval: float = 0.1,
        stack_ms: float = 50.0,
    ) -> None:
        self.out_dir = out_dir
        self.interval = max(0.001, interval)
        self.net_interval = max(self.interval, net_interval)
        self.stack_ms = stack_ms
        self._loops: dict[int, _LoopWatch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._pid = os.getpid()
        self._stacks = 0
        self._sock_kinds: dict[int, bool] = {}
        self._running_at_fork = False
        self._gc_start = 0.0
        # [pause s gen0, gen1, gen2, longest pause s, collections gen0, gen1, gen2]
        self._gc_acc = [0.0] * 7
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    # -- loops -------------------------------------------------------------------

    def add_loop(self, loop: asyncio.AbstractEventLoop, thread_id: int | None = None) -> None:
        """Watch ``loop`` (called by the ``_set_running_loop`` hook; idempotent)."""
        key = id(loop)
        watch = self._loops.get(key)
        if watch is None or watch.loop() is not loop:
            self._loops[key] = _LoopWatch(loop, thread_id)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Open the output file, hook GC and start the sampling thread."""
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self._pid}.jsonl")
        self._file = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._write(self._meta())
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="sluicegate-doctor-probe", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, write a last sample and close the file (safe to call twice)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._thread = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None

    def _before_fork(self) -> None:
        # Hold the lock across fork so the child never inherits it locked, and flush
        # so the child's copy of the buffer is empty (no duplicated lines).
        self._lock.acquire()
        self._running_at_fork = self._thread is not None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        # The thread did not survive the fork: start over with this pid's own file.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._file = None
        self._thread = None
        self._pid = os.getpid()
        self._stacks = 0
        self._loops = {}
        if not self._running_at_fork:
            return
        with contextlib.suppress(OSError):
            self.start()

    # -- sampling ----------------------------------------------------------------

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
            return
        took = now - self._gc_start
        acc = self._gc_acc  # swapped whole by the sampler, so no lock (GC can run anywhere)
        gen = min(int(info.get("generation", 0)), 2)
        acc[gen] += took
        acc[4 + gen] += 1
        if took > acc[3]:
            acc[3] = took

    def _run(self) -> None:
        next_tick = time.perf_counter()
        next_net = next_tick
        next_flush = next_tick + _FLUSH_EVERY
        last_wall = time.time()
        cpu = _cpu_times()
        while not self._stop.is_set():
            next_tick += self.interval
            now = time.perf_counter()
            if next_tick < now:  # we fell behind (GIL, suspended): do not burst
                next_tick = now + self.interval
            if self._stop.wait(next_tick - now):
                break
            now = time.perf_counter()
            try:
                sample = self._sample(now, last_wall, cpu)
                last_wall = sample["t"]
                cpu = (sample["cpu_user"], sample["cpu_system"])
                if now >= next_net:
                    next_net = now + self.net_interval
                    sample.update(self._net_fields())
                self._write(sample)
                if now >= next_flush:
                    next_flush = now + _FLUSH_EVERY
                    self._flush()
            except Exception as exc:  # the probe must never take the server down
                self._write({"type": "error", "pid": self._pid, "error": repr(exc)})
        self._write(self._sample(time.perf_counter(), last_wall, cpu) | self._net_fields())
        self._flush()

    def _sample(self, now: float, last_wall: float, cpu: tuple[float, float]) -> dict[str, Any]:
        wall = time.time()
        user, system = _cpu_times()
        acc, self._gc_acc = self._gc_acc, [0.0] * 7
        delay: float | None = None
        for key, watch in list(self._loops.items()):
            d = self._watch_loop(key, watch, now, wall)
            if d is not None and (delay is None or d > delay):
                delay = d
        return {
            "type": "sample",
            "pid": self._pid,
            "t": wall,
            "dt": wall - last_wall,
            "rss": self._rss(),
            "cpu_user": user,
            "cpu_system": system,
            "cpu": round((user + system - cpu[0] - cpu[1]) / max(wall - last_wall, 1e-6), 4),
            "loop_delay_ms": None if delay is None else round(delay * 1000.0, 3),
            "loops": len(self._loops),
            "gc_ms": [round(acc[0] * 1000, 3), round(acc[1] * 1000, 3), round(acc[2] * 1000, 3)],
            "gc_max_ms": round(acc[3] * 1000, 3),
            "gc_count": [int(acc[4]), int(acc[5]), int(acc[6])],
        }

    def _watch_loop(self, key: int, watch: _LoopWatch, now: float, wall: float) -> float | None:
        """Ping one loop; return the worst delay seen since the last sample (seconds)."""
        loop = watch.loop()
        if loop is None or loop.is_closed():
            self._loops.pop(key, None)
            return None
        done, watch.done = watch.done, []
        worst = max(done) if done else None
        if not loop.is_running():
            watch.pending_since = None
            return worst
        if watch.pending_since is None:
            watch.pending_since = now
            watch.last_stack_ms = 0.0
            try:
                loop.call_soon_threadsafe(watch.pong, now)
            except RuntimeError:  # closed between the check and the call
                self._loops.pop(key, None)
            return worst
        waiting = now - watch.pending_since
        if waiting * 1000.0 >= self.stack_ms:
            self._maybe_stack(watch, waiting, wall)
        return waiting if worst is None else max(worst, waiting)

    def _maybe_stack(self, watch: _LoopWatch, waiting: float, wall: float) -> None:
        waiting_ms = waiting * 1000.0
        # One stack at the threshold, then one per further 100 ms of the same block.
        if watch.last_stack_ms and waiting_ms - watch.last_stack_ms < 100.0:
            return
        if self._stacks >= _MAX_STACKS or watch.thread_id is None:
            return
        frame = sys._current_frames().get(watch.thread_id)
        if frame is None:
            return
        watch.last_stack_ms = waiting_ms
        self._stacks += 1
        frames = [[f.filename, f.lineno, f.name] for f in traceback.extract_stack(frame, limit=40)]
        self._write(
            {
                "type": "stack",
                "pid": self._pid,
                "t": wall,
                "blocked_ms": round(waiting_ms, 3),
                "frames": frames,
            }
        )

    def _rss(self) -> int | None:
        try:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return None

    def _net_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"tasks": self._tasks(), "threads": threading.active_count()}
        try:
            with open("/proc/self/stat", "rb") as f:
                fields["threads"] = int(f.read().rsplit(b")", 1)[1].split()[17])
        except (OSError, ValueError, IndexError):
            pass
        try:
            fds = [int(name) for name in os.listdir("/proc/self/fd")]
        except OSError:
            return fields
        fields["fds"] = len(fds)
        fields.update(_tcp_queues(fds, self._sock_kinds))
        fields["tcp_mem_pages"] = _tcp_mem_pages()
        metrics = sys.modules.get("sluicegate.metrics")
        if metrics is not None:
            with contextlib.suppress(Exception):
                fields["streams"] = metrics.snapshot()
        return fields

    def _tasks(self) -> int | None:
        total = 0
        seen = False
        for watch in list(self._loops.values()):
            loop = watch.loop()
            if loop is None or loop.is_closed():
                continue
            try:
                total += len(asyncio.all_tasks(loop))
                seen = True
            except RuntimeError:
                continue
        return total if seen else None

    # -- output ------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            argv = list(sys.argv)
        return {
            "type": "meta",
            "schema": SCHEMA,
            "pid": self._pid,
            "ppid": os.getppid(),
            "argv": argv,
            "t": time.time(),
            "interval": self.interval,
            "net_interval": self.net_interval,
            "python": sys.version.split()[0],
        }

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.write(line)

    def _flush(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.flush()


def _cpu_times() -> tuple[float, float]:
    # getrusage has microsecond resolution; os.times() counts 10 ms clock ticks, which
    # would make every 10 ms sample read 0 % or 100 %.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _is_tcp(fd: int) -> bool:
    sock: socket.socket | None = None
    try:
        # fileno= wraps the server's own fd without a dup; detach() below makes sure
        # this object never closes it.
        sock = socket.socket(fileno=fd)
        return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
    except OSError:
        return False
    finally:
        if sock is not None:
            sock.detach()


def _tcp_queues(fds: list[int], kinds: dict[int, bool]) -> dict[str, int]:
    """Count this process's TCP sockets and sum their kernel queues.

    Asked of each socket fd directly (``SIOCOUTQ``/``SIOCINQ`` ioctls): the send queue
    of a connected socket is the bytes the kernel holds that the peer has not
    acknowledged, memory a slow reader pins outside the process's RSS. Reading
    ``/proc/net/tcp`` instead costs ~7 ms a read on a machine with a large socket hash
    table, whatever the number of sockets; this costs three syscalls per socket.
    ``kinds`` caches "is TCP" by socket inode between calls.
    """
    sent = recv = connections = sockets = with_queue = biggest = 0
    seen: dict[int, bool] = {}
    buf = array.array("i", [0])
    for fd in fds:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if not stat.S_ISSOCK(st.st_mode):
            continue
        tcp = kinds.get(st.st_ino)
        if tcp is None:
            tcp = _is_tcp(fd)
        seen[st.st_ino] = tcp
        if not tcp:
            continue
        sockets += 1
        try:
            fcntl.ioctl(fd, _SIOCOUTQ, buf, True)
            tx = buf[0]
            fcntl.ioctl(fd, _SIOCINQ, buf, True)
            rx = buf[0]
        except OSError:  # EINVAL: a listening socket (its queue is of connections)
            continue
        connections += 1
        sent += tx
        recv += rx
        if tx > 0:
            with_queue += 1
            biggest = max(biggest, tx)
    kinds.clear()
    kinds.update(seen)
    return {
        "sockets": sockets,
        "connections": connections,
        "send_queue": sent,
        "recv_queue": recv,
        "send_queue_sockets": with_queue,
        "send_queue_max": biggest,
    }


def _tcp_mem_pages() -> int | None:
    try:
        with open("/proc/self/net/sockstat", "rb") as f:
            for line in f:
                if line.startswith(b"TCP:"):
                    parts = line.split()
                    return int(parts[parts.index(b"mem") + 1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _hook_running_loop() -> None:
    """Learn every loop that starts running, asyncio's own and uvloop's alike.

    ``BaseEventLoop.run_forever`` calls ``asyncio.events._set_running_loop`` and uvloop
    binds ``asyncio._set_running_loop`` when it is imported, so both names are wrapped;
    uvloop imported before this hook is found by :func:`install` called on the loop.
    """
    original: Callable[[asyncio.AbstractEventLoop | None], None] = asyncio.events._set_running_loop
    if getattr(original, "_sluicegate_hook", False):
        return

    def _set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
        original(loop)
        if loop is not None:
            probe = current()
            if probe is not None:
                probe.add_loop(loop, threading.get_ident())

    setattr(_set_running_loop, "_sluicegate_hook", True)  # noqa: B010
    asyncio.events._set_running_loop = _set_running_loop
    asyncio._set_running_loop = _set_running_loop


def current() -> Probe | None:
    """The probe running in this process, if any."""
    # Not an isinstance check: the doctor may load this file as a second module copy.
    probe = getattr(sys, _SYS_KEY, None)
    return probe if hasattr(probe, "add_loop") else None


def install(
    out_dir: str | None = None,
    *,
    interval: float | None = None,
    net_interval: float | None = None,
    stack_ms: float | None = None,
) -> Probe:
    """Start sampling this process (idempotent: a second call returns the running probe).

    Arguments default to the ``SLUICEGATE_DOCTOR_*`` environment variables, then to
    ``./sluicegate-doctor``, 10 ms, 100 ms and 50 ms. Called inside a running loop, that
    loop is watched at once; otherwise loops are learnt when they start.

        >>> from sluicegate.doctor import probe
        >>> p = probe.install("/tmp/doctor-doc-example")  # doctest: +SKIP
    """
    existing = current()
    if existing is not None:
        return existing
    env = os.environ
    probe = Probe(
        out_dir or env.get(ENV_OUT) or "sluicegate-doctor",
        interval=interval if interval is not None else float(env.get(ENV_INTERVAL, "0.01")),
        net_interval=(
            net_interval if net_interval is not None else float(env.get(ENV_NET_INTERVAL, "0.1"))
        ),
        stack_ms=stack_ms if stack_ms is not None else float(env.get(ENV_STACK_MS, "50")),
    )
    setattr(sys, _SYS_KEY, probe)
    _hook_running_loop()
    running = asyncio.events._get_running_loop()
    if running is not None:
        probe.add_loop(running, threading.get_ident())
    probe.start()
    atexit.register(probe.stop)
    global _FORK_HOOKED
    if hasattr(os, "register_at_fork") and not _FORK_HOOKED:
        _FORK_HOOKED = True
        os.register_at_fork(
            before=lambda: _on_fork("before"),
            after_in_parent=lambda: _on_fork("parent"),
            after_in_child=lambda: _on_fork("child"),
        )
    return probe


_FORK_HOOKED = False


def _on_fork(when: str) -> None:
    probe = current()
    if probe is None:
        return
    if when == "before":
        probe._before_fork()
    elif when == "parent":
        probe._after_fork_parent()
    else:
        probe._after_fork_child()


def uninstall() -> None:
    """Stop the probe of this process, if one runs (used by tests)."""
    probe = current()
    if probe is not None:
        probe.stop()
        setattr(sys, _SYS_KEY, None)
