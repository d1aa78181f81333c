"""Is a ledger owner's process still the one that registered? Answered without psutil.

The SQLite ledger tells a dead worker from a live one by (pid, process start time): a
pid alone can be reused. psutil answers that, but it is a compiled dependency that a
plain ``pip install sluicegate`` should not need, so on Linux this reads the two
numbers psutil reads itself: field 22 of ``/proc/<pid>/stat`` (start, in clock ticks
since boot) and ``btime`` in ``/proc/stat``. Elsewhere it uses psutil when installed,
and otherwise says "alive", which leaves the decision to the owner's heartbeat.

>>> import os
>>> started = process_started(os.getpid())
>>> started is None or process_alive(os.getpid(), started)
True
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

__all__ = ["process_alive", "process_started"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return None


_BOOT = _boot_time()


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 on of ``/proc/<pid>/stat`` (after the command name, which may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return psutil


def process_started(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch; None if unknown or not running."""
    if _BOOT is not None:
        fields = _stat_fields(pid)
        # fields[0] is field 3 (state), so the start time (field 22) is fields[19].
        return None if fields is None else _BOOT + int(fields[19]) / _TICKS
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: int, started: float) -> bool:
    """True if ``pid`` runs and is the process that started at ``started`` (not a reuse).

    Unknowable here (no ``/proc``, no psutil, or not allowed to look): True, so that the
    heartbeat decides.
    """
    if _BOOT is not None:
        fields = _stat_fields(pid)
        if fields is None or fields[0] in (b"Z", b"X"):
            return False  # gone, or a zombie: it will never write again
        return abs(_BOOT + int(fields[19]) / _TICKS - started) < 1.0
    psutil = _psutil()
    if psutil is None:
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(abs(proc.create_time() - started) < 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
