"""Memory return on glibc: the mallopt/malloc_trim calls and when the trimmer trims."""

from __future__ import annotations

import time

import pytest

from sluicegate.cli import malloc

pytestmark = pytest.mark.skipif(malloc.glibc() is None, reason="glibc only")


def test_tune_and_trim_reach_glibc() -> None:
    assert malloc.tune(malloc.DEFAULT_MMAP_THRESHOLD)
    assert malloc.trim()


def test_the_trimmer_trims_once_per_busy_period() -> None:
    # (live streams, streams ended so far), one per poll; the last repeats.
    script = [(0, 0), (0, 0), (3, 0), (5, 1), (0, 6), (0, 6), (0, 6), (0, 9), (0, 9)]
    polls = 0

    def activity() -> tuple[int, int]:
        nonlocal polls
        polls += 1
        return script[min(polls - 1, len(script) - 1)]

    trimmer = malloc.IdleTrimmer(interval=0.01, activity=activity).start()
    deadline = time.monotonic() + 10
    while polls < len(script) + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    # Idle at start: no trim. Busy, then idle: one. Three streams ended between two
    # polls with none live at either: one more. Idle after that: none.
    assert polls >= len(script) + 5
    assert trimmer.trims == 2


def test_the_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(malloc.ENV_THRESHOLD, "0")  # trim only: nothing to set
    assert malloc.tune()
    monkeypatch.setenv(malloc.ENV_THRESHOLD, "lots")  # a warning, then the default
    assert malloc.tune()
    monkeypatch.setenv(malloc.ENV_THRESHOLD, "512K")
    assert malloc.tune()
    monkeypatch.delenv(malloc.ENV_THRESHOLD)
    assert malloc.tune()
