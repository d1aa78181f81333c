"""The contract every backend keeps, run over each one (memory, Redis Streams)."""

from __future__ import annotations

import asyncio

import pytest
from backend_support import MakeBackend

from sluicegate.events.backend import Backend, Published, Replay, Resync
from sluicegate.events.framing import encode_body
from sluicegate.events.ids import ZERO, parse_id
from sluicegate.events.memory import MemoryBackend


class Collector:
    """Plays the broadcast: records what the backend delivers and reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Published]] = []
        self.failures: list[tuple[str, BaseException]] = []
        self.arrived = asyncio.Event()

    def deliver(self, topic: str, event: Published) -> None:
        self.events.append((topic, event))
        self.arrived.set()

    def fail(self, topic: str, error: BaseException) -> None:
        self.failures.append((topic, error))

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5.0):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def started(backend: Backend) -> Collector:
    collector = Collector()
    await backend.start(collector.deliver, collector.fail)
    return collector


async def publish_n(backend: Backend, n: int, topic: str = "t") -> list[Published]:
    return [await backend.publish(topic, f"k{i % 3}", encode_body({"i": i})) for i in range(n)]


async def test_ids_increase_and_the_wire_carries_them(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await started(backend)
    try:
        events = await publish_n(backend, 5)
        orders = [e.order for e in events]
        assert orders == sorted(orders) and len(set(orders)) == 5
        for e in events:
            assert parse_id(e.id) == e.order
            assert e.wire == f"id: {e.id}\n".encode() + encode_body({"i": events.index(e)})
        assert [e.key for e in events] == ["k0", "k1", "k2", "k0", "k1"]
    finally:
        await backend.aclose()


async def test_replay_gives_what_follows_an_id_in_pages(make_backend: MakeBackend) -> None:
    backend = make_backend(replay=100)
    await started(backend)
    try:
        events = await publish_n(backend, 10)
        everything = await backend.replay("t", ZERO, 100)
        assert isinstance(everything, Replay)
        assert [e.id for e in everything.events] == [e.id for e in events]
        assert everything.head == events[-1].id
        rest = await backend.replay("t", events[3].order, 4)
        assert isinstance(rest, Replay)
        assert [e.id for e in rest.events] == [e.id for e in events[4:8]]
        assert [e.wire for e in rest.events] == [e.wire for e in events[4:8]]
        at_head = await backend.replay("t", events[-1].order, 100)
        assert isinstance(at_head, Replay) and at_head.events == []
    finally:
        await backend.aclose()


async def test_an_empty_topic_replays_nothing_from_zero(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await started(backend)
    try:
        result = await backend.replay("empty", ZERO, 10)
        assert isinstance(result, Replay) and result.events == []
        assert parse_id(result.head) >= ZERO
    finally:
        await backend.aclose()


async def test_an_id_older_than_what_is_kept_is_a_resync(make_backend: MakeBackend) -> None:
    backend = make_backend(replay=10)
    await started(backend)
    try:
        # Redis trims with MAXLEN ~ by whole nodes (100 entries by default): go well past.
        events = await publish_n(backend, 400)
        result = await backend.replay("t", events[0].order, 10)
        assert isinstance(result, Resync)
        assert result.head == events[-1].id
        # What is kept still replays; at least `replay` events are kept.
        kept = await backend.replay("t", events[-11].order, 100)
        assert isinstance(kept, Replay)
        assert [e.id for e in kept.events] == [e.id for e in events[-10:]]
    finally:
        await backend.aclose()


async def test_an_id_from_the_future_is_a_resync(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await started(backend)
    try:
        [last] = await publish_n(backend, 1)
        result = await backend.replay("t", (last.order[0] + 10**6, 0), 10)
        assert isinstance(result, Resync)
        assert result.head == last.id
    finally:
        await backend.aclose()


async def test_a_watched_topic_is_delivered_once_in_order(make_backend: MakeBackend) -> None:
    backend = make_backend()
    collector = await started(backend)
    try:
        await backend.watch("t")
        await backend.watch("t")  # idempotent: still one delivery per event
        events = await publish_n(backend, 20)
        await backend.publish("other", "k", encode_body("not watched"))
        await collector.wait_for(20)
        await asyncio.sleep(0.3)  # room for a duplicate to show up
        assert [(t, e.id) for t, e in collector.events] == [("t", e.id) for e in events]
        assert [e.wire for _, e in collector.events] == [e.wire for e in events]
        assert collector.failures == []
    finally:
        await backend.aclose()


async def test_topics_are_separate(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await started(backend)
    try:
        a = await publish_n(backend, 3, "a")
        b = await publish_n(backend, 2, "b")
        ra, rb = await backend.replay("a", ZERO, 10), await backend.replay("b", ZERO, 10)
        assert isinstance(ra, Replay) and isinstance(rb, Replay)
        assert [e.id for e in ra.events] == [e.id for e in a]
        assert [e.id for e in rb.events] == [e.id for e in b]
    finally:
        await backend.aclose()


@pytest.mark.parametrize("replay", [-1, "10", True])
def test_bad_replay_sizes_are_refused(make_backend: MakeBackend, replay: object) -> None:
    from sluicegate.errors import ConfigError

    with pytest.raises(ConfigError, match="replay"):
        make_backend(replay=replay)


async def test_a_lease_has_one_holder_and_a_counter_counts(make_backend: MakeBackend) -> None:
    one, two = make_backend(), make_backend()
    await started(one)
    await started(two)
    try:
        assert await one.lease("feed", "a", 0.3)  # type: ignore[attr-defined]
        assert await one.lease("feed", "a", 0.3)  # type: ignore[attr-defined]  # renewed
        if isinstance(one, MemoryBackend):
            assert await two.count("n") == 1  # type: ignore[attr-defined]
            return  # one process: nothing to share
        assert not await two.lease("feed", "b", 0.3)  # type: ignore[attr-defined]
        await asyncio.sleep(0.4)  # the holder stopped renewing
        assert await two.lease("feed", "b", 0.3)  # type: ignore[attr-defined]
        assert not await one.lease("feed", "a", 0.3)  # type: ignore[attr-defined]
        counts = [await b.count("n") for b in (one, two, one)]  # type: ignore[attr-defined]
        assert counts == [1, 2, 3]
    finally:
        await one.aclose()
        await two.aclose()
