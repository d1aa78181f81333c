"""``benchmarks.apps`` with the pump's turn of the loop after every message taken out.

For ``bench_cpu.py --turn-cost`` only: it measures what that turn costs per GB,
beside the real thing. The turn is what lets a server learn that the client left
before the producer makes its next chunk (issue 14: production stops within one chunk
of a disconnect), so sluicegate itself never runs without it; a pump built this way
would run on for the rest of the body after the client has gone.
"""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.apps import app
from sluicegate.engine import pump


class _NoTurn:
    """Awaits nothing: ``await _NoTurn()`` returns at once without a turn of the loop."""

    __slots__ = ()

    def __await__(self) -> Iterator[None]:
        return iter(())


# The one place the straight-out path turns the loop (see pump._produce).
pump._NEXT_TURN = _NoTurn()  # type: ignore[assignment]

__all__ = ["app"]
