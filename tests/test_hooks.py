"""The pump's hooks for slow-reader guards and admission budgets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sluicegate import Refusal, StreamResponse, defaults
from sluicegate.engine.metrics import REGISTRY
from tests.asgi import Exchange, call


@dataclass
class StallGuard:
    """Cut when one send waits longer than ``stall`` seconds."""

    stall: float
    accepted_bytes: int = 0
    log: list[tuple[int, float]] = field(default_factory=list)

    def new(self, now: float) -> StallGuard:
        return self

    def accepted(self, now: float, nbytes: int, waited: float) -> None:
        self.accepted_bytes += nbytes
        self.log.append((nbytes, waited))

    def deadline(self, now: float) -> float | None:
        return now + self.stall

    def verdict(self, now: float) -> str | None:
        return None


async def endless() -> AsyncIterator[bytes]:
    while True:
        yield b"x" * 10_000
        await asyncio.sleep(0)


async def test_a_send_that_waits_past_the_guard_deadline_cuts_the_stream() -> None:
    guard = StallGuard(stall=0.2)
    ex = Exchange()
    stalled = asyncio.Event()

    async def on_send(message: dict[str, Any]) -> None:
        if len(ex.messages) > 3:
            stalled.set()
            await asyncio.sleep(3600)  # a client that stopped reading

    ex.on_send = on_send
    before = REGISTRY.snapshot()["timed_out"]
    await asyncio.wait_for(call(StreamResponse(endless(), guard=guard), exchange=ex), 5)
    assert stalled.is_set() and not ex.complete
    assert guard.accepted_bytes > 0
    assert REGISTRY.snapshot()["timed_out"] == before + 1


@dataclass
class Seats:
    free: int
    released: int = 0

    def admit(self, scope: Any) -> Any:
        if self.free <= 0:
            return Refusal("too many streams", retry_after=2.4)
        self.free -= 1
        seats = self

        class _Ticket:
            def release(self) -> None:
                seats.free += 1
                seats.released += 1

        return _Ticket()


async def test_over_budget_is_a_503_before_anything_is_produced() -> None:
    seats = Seats(free=1)
    produced = False

    async def gen() -> AsyncIterator[bytes]:
        nonlocal produced
        produced = True
        yield b"x"

    ok = await call(StreamResponse(b"fine", admission=seats))
    assert ok.status == 200 and seats.released == 1
    seats.free = 0
    ex = await call(StreamResponse(gen(), admission=seats))
    assert ex.status == 503 and ex.headers["retry-after"] == "2"
    assert json.loads(ex.body)["detail"] == "too many streams"
    assert not produced


async def test_app_wide_defaults_apply_unless_a_response_sets_its_own() -> None:
    seats = Seats(free=0)
    defaults.admission = seats
    try:
        assert (await call(StreamResponse(b"x"))).status == 503
        assert (await call(StreamResponse(b"x", admission=None))).status == 200
    finally:
        defaults.admission = None
