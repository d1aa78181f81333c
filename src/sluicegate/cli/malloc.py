"""Give memory back to the system after load, on glibc (what ``sluicegate serve`` does).

A stream of 1 MiB chunks frees every chunk it made, yet the server's RSS can stay
hundreds of MiB high once the streams end. The cause is glibc's malloc, not a leak:

* Blocks of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) get their own
  ``mmap`` and go back to the kernel on ``free``. But glibc raises the threshold to the
  size of any mmapped block that is freed (up to 32 MiB), so after some 1 MiB chunks
  are freed the next ones come from the heap instead, at a moment that depends on
  timing.
* Freed heap memory returns to the kernel only from the top of the heap; with
  thousands of chunks freed in any order, holes in the middle stay resident.

Measured (BENCHMARKS.md, "RSS after load"; 500 streams of 1 MiB chunks): with glibc's
defaults, 103 to 576 MiB stayed (idle 35-37 MiB) from run to run, and server CPU
swung with it (2.7-3.9 s), as the chunks came from the heap or from ``mmap``. A low
fixed threshold (256 KiB) brings RSS back, which confirms the cause, but makes every
chunk an ``mmap``/``munmap`` pair with fresh page faults: about 45 % more server CPU.
What ``--return-memory`` does instead:

* :func:`tune` fixes the threshold *high* (:data:`DEFAULT_MMAP_THRESHOLD`, 32 MiB):
  chunks always come from the heap and are reused (the cheap path, every run), and
  the threshold no longer moves;
* :class:`IdleTrimmer` calls ``malloc_trim(0)`` once the process goes idle (no live
  stream, see :data:`sluicegate.engine.metrics.REGISTRY`), which returns the free
  pages in the middle of the heap and of every thread's arena: RSS was back at
  43-44 MiB within a second, with server CPU at the cheap path's 2.9-3.0 s.

Both call glibc through :mod:`ctypes` (Python exposes neither) and do nothing
elsewhere (musl and macOS manage memory differently).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable

__all__ = ["DEFAULT_MMAP_THRESHOLD", "ENV_THRESHOLD", "IdleTrimmer", "glibc", "trim", "tune"]

logger = logging.getLogger("sluicegate")

#: The threshold :func:`tune` sets: glibc's largest on 64-bit (``HEAP_MAX_SIZE / 2``),
#: the ceiling its dynamic threshold rises to anyway. Blocks below it come from the
#: heap, are reused under load and go back to the kernel at the idle trim.
DEFAULT_MMAP_THRESHOLD = 32 << 20

#: Environment variable that overrides the threshold :func:`tune` sets (a size such as
#: ``256K``); ``0`` leaves glibc's dynamic threshold alone.
ENV_THRESHOLD = "SLUICEGATE_MMAP_THRESHOLD"

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune(mmap_threshold: int | None = None) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes; False if not glibc.

    ``None`` takes :data:`ENV_THRESHOLD` if set, else :data:`DEFAULT_MMAP_THRESHOLD`;
    ``0`` leaves glibc's dynamic threshold as it is. True whenever glibc is there.
    """
    libc = glibc()
    if libc is None:
        return False
    if mmap_threshold is None:
        mmap_threshold = _threshold_from_env()
    if mmap_threshold > 0 and not libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)):
        logger.warning("glibc refused an mmap threshold of %d bytes", mmap_threshold)
    return True


def _threshold_from_env() -> int:
    from sluicegate.errors import ConfigError
    from sluicegate.units import parse_size

    text = os.environ.get(ENV_THRESHOLD)
    if text is None:
        return DEFAULT_MMAP_THRESHOLD
    try:
        value = parse_size(text)
    except ConfigError as exc:
        logger.warning("%s ignored: %s", ENV_THRESHOLD, exc)
        return DEFAULT_MMAP_THRESHOLD
    # glibc refuses thresholds above HEAP_MAX (32 MiB on 64-bit): mallopt says False.
    return min(value, 1 << 30)


def trim() -> bool:
    """``malloc_trim(0)``: return free heap pages to the kernel; False if not glibc."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(ctypes.c_size_t(0))
    return True


class IdleTrimmer:
    """A daemon thread that trims once each time the process goes from busy to idle.

    ``activity()`` returns ``(live, ended)``: the work under way and a count of work
    finished so far (default: live sluicegate streams, and streams ended). It is
    polled every ``interval`` seconds; ``malloc_trim`` runs once at the first poll
    that finds nothing live after some work was seen (live, or ended since the last
    poll), so at most once per busy period and within ``interval`` of going idle. A
    trim walks the heap (milliseconds for hundreds of MiB) and is done off the event
    loop; glibc locks each arena while it trims it.
    """

    def __init__(
        self, interval: float = 1.0, activity: Callable[[], tuple[int, int]] | None = None
    ) -> None:
        self.interval = interval
        self.activity = activity or _stream_activity
        #: How many trims ran (for tests and logs).
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sluicegate-trim", daemon=True)

    def start(self) -> IdleTrimmer:
        """Start polling (only on glibc: elsewhere this does nothing)."""
        if glibc() is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def _run(self) -> None:
        dirty = False
        last_ended = self.activity()[1]
        while not self._stop.wait(self.interval):
            live, ended = self.activity()
            if live or ended != last_ended:
                dirty = True
                last_ended = ended
            if dirty and not live:
                trim()
                self.trims += 1
                dirty = False


def _stream_activity() -> tuple[int, int]:
    from sluicegate.engine.metrics import snapshot

    now = snapshot()  # thread-safe
    ended = now["completed"] + now["failed"] + now["timed_out"] + now["disconnects"]
    return int(now["active_streams"]), int(ended)
