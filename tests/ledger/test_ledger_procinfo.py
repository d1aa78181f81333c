"""The SQLite ledger's process identity, read from /proc, agrees with psutil's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil  # type: ignore[import-untyped]

from sluicegate.ledger.procinfo import process_alive, process_started


def test_start_time_matches_psutil_within_the_tolerance_used() -> None:
    started = process_started(os.getpid())
    assert started is not None
    assert abs(started - psutil.Process().create_time()) < 0.5


def test_a_live_process_is_alive_and_a_reused_pid_is_not() -> None:
    started = process_started(os.getpid())
    assert started is not None
    assert process_alive(os.getpid(), started)
    assert not process_alive(os.getpid(), started - 3600)  # same pid, another start


def test_a_process_that_ended_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_started(child.pid)
    child.wait(timeout=30)
    assert started is not None
    assert not process_alive(child.pid, started)
    assert process_started(child.pid) is None


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        started = process_started(child.pid)
        assert started is not None
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not process_alive(child.pid, started)  # exited, not yet reaped
    finally:
        child.wait(timeout=30)
