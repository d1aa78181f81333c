"""Give memory back to the system after load, on glibc (what ``sluicegate serve`` does).

A stream of 1 MiB chunks frees every chunk it made, yet the server's RSS stays high
once the streams end. The cause is glibc's malloc, not a leak:

* Blocks of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) get their own
  ``mmap`` and go back to the kernel on ``free``. But glibc raises the threshold to the
  size of any mmapped block that is freed (up to 32 MiB), so after the first 1 MiB
  chunk is freed the next ones come from the heap instead.
* Freed heap memory returns to the kernel only from the top of the heap
  (``M_TRIM_THRESHOLD``); with thousands of chunks freed in any order, holes in the
  middle stay resident.

Two calls fix it, both through :mod:`ctypes` because Python exposes neither:

* :func:`tune` sets ``M_MMAP_THRESHOLD`` once at start. Setting it also turns the
  dynamic adjustment off, so every block of at least that size is mmapped and
  unmapped on free, however many have been freed before.
* :class:`IdleTrimmer` calls ``malloc_trim(0)`` once the process goes idle (no live
  stream, see :data:`sluicegate.engine.metrics.REGISTRY`): it returns the free pages
  in the middle of the heap and of every thread's arena.

On anything but glibc both do nothing (musl and macOS manage memory differently).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import sys
import threading
from collections.abc import Callable

__all__ = ["DEFAULT_MMAP_THRESHOLD", "IdleTrimmer", "glibc", "trim", "tune"]

logger = logging.getLogger("sluicegate")

#: Blocks of at least this size are mmapped (and unmapped on free). Below it are the
#: 64 KiB messages a server writes in a steady stream: the heap serves them well.
DEFAULT_MMAP_THRESHOLD = 256 * 1024

_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes; False if not glibc."""
    libc = glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)))


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
