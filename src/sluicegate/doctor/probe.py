"""The in-process sampler the doctor injects into every Python process of a server.

Each running asyncio loop (asyncio's own or uvloop's, learnt by wrapping
``asyncio._set_running_loop``) gets a heartbeat: a timer that re-arms itself every
``interval`` (10 ms by default). How late it fires is the **event-loop delay**, as in
Clinic.js Doctor. A daemon thread wakes every ``interval`` and

* reads the worst delay since the last sample; when a beat is overdue by 50 ms the
  loop is stuck *now*, so it samples the loop thread's stack
  (``sys._current_frames()``) and the report can name the code that blocked;
* reads RSS and CPU time, and the GC pauses ``gc.callbacks`` measured since the
  last sample.

Every ``net_interval`` (100 ms by default) it also counts asyncio tasks, open fds
and established TCP connections, sums the **kernel send and receive queues** of the
process's TCP sockets (``SIOCOUTQ`` on each socket fd listed in ``/proc/self/fd``),
reads the system's TCP memory (``/proc/net/sockstat``), and copies
:func:`sluicegate.engine.metrics.snapshot` when the application uses sluicegate.

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
_MAX_ERRORS = 10
_FLUSH_EVERY = 0.25
# sockios.h / ioctls.h (Linux)
_SIOCOUTQ = 0x5411
_SIOCINQ = 0x541B


class _LoopWatch:
    """Heartbeat of one event loop: a timer that re-arms itself every ``interval``.

    How late each beat fires is the loop's delay (Clinic.js measures the same timer
    overshoot). The loop runs :meth:`_beat`; the sampling thread only reads ``worst``
    and ``due``, so watching a loop costs one cheap timer callback per interval and
    no cross-thread wake-up.
    """

    __slots__ = ("due", "epoch", "interval", "last_stack_ms", "loop", "thread_id", "worst")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop: weakref.ref[asyncio.AbstractEventLoop] = weakref.ref(loop)
        self.interval = interval
        self.thread_id: int | None = None
        # perf_counter() time the next beat is due; inf while the loop is not running
        self.due = float("inf")
        # worst lateness (seconds) since the sampler last read it
        self.worst = 0.0
        # bumped at every (re)start, so a beat armed before a stop is ignored
        self.epoch = 0
        self.last_stack_ms = 0.0

    def start(self) -> None:
        """Arm the heartbeat; call on the loop's thread while the loop runs."""
        loop = self.loop()
        if loop is None or loop.is_closed():
            return
        self.epoch += 1
        self.thread_id = threading.get_ident()
        self._arm(loop, self.epoch)

    def stopped(self) -> None:
        """The loop stopped running (it may run again later)."""
        self.epoch += 1
        self.due = float("inf")

    def _arm(self, loop: asyncio.AbstractEventLoop, epoch: int) -> None:
        self.due = time.perf_counter() + self.interval
        loop.call_later(self.interval, self._beat, epoch)

    def _beat(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        late = time.perf_counter() - self.due
        if late > self.worst:
            self.worst = late
        loop = self.loop()
        if loop is not None:
            self._arm(loop, epoch)


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
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._statm: int | None = None
        # rows (lists) and records (dicts) not yet written; only the sampler appends
        self._pending: list[Any] = []
        self._pid = os.getpid()
        self._stacks = 0
        self._errors = 0
        self._sock_kinds: dict[int, bool] = {}
        self._running_at_fork = False
        self._gc_start = 0.0
        # [pause s gen0, gen1, gen2, longest pause s, collections gen0, gen1, gen2]
        self._gc_acc = [0.0] * 7
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    # -- loops -------------------------------------------------------------------

    def add_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ``loop`` (idempotent; called by the ``_set_running_loop`` hook).

        On the loop's own thread the heartbeat starts at once; from another thread it
        is handed to the loop with ``call_soon_threadsafe``.
        """
        key = id(loop)
        watch = self._loops.get(key)
        if watch is None or watch.loop() is not loop:
            watch = self._loops[key] = _LoopWatch(loop, self.interval)
        if asyncio.events._get_running_loop() is loop:
            watch.start()
        elif loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(watch.start)

    def loop_stopped(self, thread_id: int) -> None:
        """The loop running on ``thread_id`` stopped (called by the hook)."""
        for watch in list(self._loops.values()):
            if watch.thread_id == thread_id:
                watch.stopped()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Open the output file, hook GC and start the sampling thread."""
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self._pid}.jsonl")
        self._file = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._statm = None
        self._write(self._meta())
        self._flush()
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="sluicegate-doctor-probe", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, write a last sample and close the file (safe to call twice)."""
        self._stopping = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._thread = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._flush()
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
            if self._statm is not None:
                with contextlib.suppress(OSError):
                    os.close(self._statm)
                self._statm = None

    def _before_fork(self) -> None:
        # Flush, then hold the lock across fork so the child never inherits it locked
        # and its copies of the buffers are empty (no duplicated lines).
        self._flush()
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
        self._stopping = False
        self._file = None
        self._pending = []
        if self._statm is not None:  # it reads the parent's /proc entry
            with contextlib.suppress(OSError):
                os.close(self._statm)
            self._statm = None
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
        last = (time.time(), *_cpu_times())
        while not self._stopping:
            next_tick += self.interval
            now = time.perf_counter()
            if next_tick < now:  # we fell behind (GIL, suspended): do not burst
                next_tick = now + self.interval
            # A plain sleep: Event.wait(timeout) costs ~3x the CPU per wake-up.
            time.sleep(next_tick - now)
            if self._stopping:
                break
            now = time.perf_counter()
            try:
                row = self._sample(now, last)
                last = (row[0], row[2], row[3])
                if now >= next_net:
                    next_net = now + self.net_interval
                    row.append(self._net_fields())
                self._pending.append(row)
                if now >= next_flush:
                    next_flush = now + _FLUSH_EVERY
                    self._flush()
            except Exception as exc:  # the probe must never take the server down
                self._errors += 1
                if self._errors <= _MAX_ERRORS:
                    self._write({"type": "error", "pid": self._pid, "error": repr(exc)})
        row = self._sample(time.perf_counter(), last)
        row.append(self._net_fields())
        self._pending.append(row)
        self._flush()

    def _sample(self, now: float, last: tuple[float, float, float]) -> list[Any]:
        """One reading as a compact row; :meth:`_record` turns it into JSON later, in
        a batch, which costs much less than per sample right after a wake-up."""
        wall = time.time()
        user, system = _cpu_times()
        acc, self._gc_acc = self._gc_acc, [0.0] * 7
        delay: float | None = None
        for key, watch in list(self._loops.items()):
            d = self._watch_loop(key, watch, now, wall)
            if d is not None and (delay is None or d > delay):
                delay = d
        return [wall, self._rss(), user, system, delay, acc, last]

    def _record(self, row: list[Any]) -> dict[str, Any]:
        wall, rss, user, system, delay, acc, last = row[:7]
        dt = wall - last[0]
        record = {
            "type": "sample",
            "pid": self._pid,
            "t": wall,
            "dt": round(dt, 6),
            "rss": rss,
            "cpu_user": user,
            "cpu_system": system,
            "cpu": round((user + system - last[1] - last[2]) / max(dt, 1e-6), 4),
            "loop_delay_ms": None if delay is None else round(delay * 1000.0, 3),
            "gc_ms": [round(acc[0] * 1000, 3), round(acc[1] * 1000, 3), round(acc[2] * 1000, 3)],
            "gc_max_ms": round(acc[3] * 1000, 3),
            "gc_count": [int(acc[4]), int(acc[5]), int(acc[6])],
        }
        if len(row) > 7:
            record.update(row[7])
        return record

    def _watch_loop(self, key: int, watch: _LoopWatch, now: float, wall: float) -> float | None:
        """The worst delay of one loop since the last sample (seconds), or ``None``."""
        loop = watch.loop()
        if loop is None or loop.is_closed():
            self._loops.pop(key, None)
            return None
        worst, watch.worst = watch.worst, 0.0
        if not loop.is_running() or watch.due == float("inf"):
            return None
        # A beat that is overdue now means the loop is stuck right now: count it
        # already, and catch the stack while the culprit is still on it.
        waiting = now - watch.due
        if waiting * 1000.0 >= self.stack_ms:
            self._maybe_stack(watch, waiting, wall)
        else:
            watch.last_stack_ms = 0.0
        return max(worst, waiting, 0.0)

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
        # One pread on a descriptor kept open: three syscalls fewer than open/read/close.
        if self._statm is None:
            return None
        try:
            return int(os.pread(self._statm, 64, 0).split()[1]) * self._page
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
        metrics = sys.modules.get("sluicegate.engine.metrics")
        if metrics is not None:
            with contextlib.suppress(Exception):
                fields["streams"] = metrics.snapshot()
        events = sys.modules.get("sluicegate.events.metrics")
        if events is not None:
            # Subscribers and what the slow-subscriber policies did, beside the streams.
            with contextlib.suppress(Exception):
                streams = fields.setdefault("streams", {})
                streams.update({f"events_{k}": v for k, v in events.snapshot().items()})
        caveats = sys.modules.get("sluicegate.engine.caveats")
        if caveats is not None:
            # Stacks that break sluicegate's promises, counted per stream.
            with contextlib.suppress(Exception):
                streams = fields.setdefault("streams", {})
                streams.update({f"caveat:{k}": v for k, v in caveats.snapshot().items()})
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
        self._pending.append(record)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            if self._file is None:
                return
            lines = [
                json.dumps(
                    self._record(item) if isinstance(item, list) else item, separators=(",", ":")
                )
                for item in pending
            ]
            with contextlib.suppress(OSError, ValueError):
                if lines:
                    self._file.write("\n".join(lines) + "\n")
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
        probe = current()
        if probe is None:
            return
        try:
            if loop is not None:
                probe.add_loop(loop)
            else:
                probe.loop_stopped(threading.get_ident())
        except Exception:  # never break the server's loop for a measurement
            pass

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
        probe.add_loop(running)
    elif "uvloop.loop" in sys.modules:
        # uvloop bound the unwrapped _set_running_loop when it was imported.
        probe._write(
            {
                "type": "error",
                "pid": probe._pid,
                "error": "uvloop was imported before install(): its loops are only watched "
                "when install() is called from inside them",
            }
        )
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
