"""The demo's scenario app, in process (no socket): every path, its stats, its errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from sluicegate.demo.app import (
    Params,
    StreamRecord,
    app,
    ignore_backpressure,
    parse_params,
    recent_records,
)
from sluicegate.errors import ConfigError, OverBudget
from tests.asgi import Exchange, call

KiB = 1024
MiB = 1024 * KiB
SMALL = "chunk=64K&rate=64M&count=3"


def test_params_default_to_the_article_and_parse_sizes() -> None:
    p = parse_params({})
    assert (p.chunk, p.rate, p.count, p.interval) == (20 * MiB, 20 * MiB, 20, 1.0)
    p = parse_params({"chunk": "2M", "rate": "100M", "count": "3", "limit": "8M"})
    assert (p.chunk, p.count, p.channel_limit) == (2 * MiB, 3, 8 * MiB)
    assert Params(chunk=MiB).channel_limit == 2 * MiB


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"count": "many"}, "bad count"),
        ({"count": "0"}, "count must be"),
        ({"chunk": "1G"}, "chunk must be"),
        ({"rate": "0"}, "bad rate"),
        ({"chunk": "2M", "cap": "1M"}, "cap must be"),
        ({"chunk": "lots"}, "bad size"),
    ],
)
def test_bad_params_say_what_is_wrong(query: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_params(query)


async def test_hello_leaves_as_two_messages_with_a_turn_and_one_without() -> None:
    assert (await call(app, path="/hello")).bodies == [b"Hello", b"World"]
    assert (await call(app, path="/hello", query="turn=0")).bodies == [b"HelloWorld"]


@pytest.mark.parametrize("scenario", ["ignore-backpressure", "wait", "pull-source", "generator"])
async def test_each_scenario_streams_every_chunk_and_records_it(scenario: str) -> None:
    ex = await call(app, path=f"/{scenario}", query=SMALL)
    assert ex.status == 200 and ex.complete
    assert len(ex.body) == 3 * 64 * KiB
    # Each chunk is freshly made with its own fill byte: nothing reused.
    assert ex.body[0] == 1 and ex.body[-1] == 3
    rec = recent_records()[-1]
    assert rec["scenario"] == scenario
    assert rec["produced"] == 3 * 64 * KiB and rec["chunks"] == 3 and len(rec["times"]) == 3
    assert rec["ended"] is not None


async def test_leaky_drops_the_oldest_messages_for_a_slow_reader() -> None:
    async def slow(message: dict[str, object]) -> None:
        if message.get("body"):
            await asyncio.sleep(0.02)  # a reader far slower than 64 KiB per ms

    ex = await call(
        app, path="/leaky", query="chunk=64K&rate=64M&count=40&limit=128K",
        exchange=Exchange(on_send=slow),
    )  # fmt: skip
    assert ex.status == 200 and ex.complete
    rec = recent_records()[-1]
    assert rec["scenario"] == "leaky" and rec["produced"] == 40 * 64 * KiB
    assert rec["drops"] > 0
    assert len(ex.body) + rec["dropped"] == rec["produced"]


async def test_the_anti_pattern_is_stopped_by_its_safety_cap() -> None:
    p = Params(chunk=KiB, rate=4 * MiB, count=1000, cap=8 * KiB)
    rec = StreamRecord("ignore-backpressure", {})
    chunks = ignore_backpressure(p, rec)
    first = await anext(chunks)
    await asyncio.sleep(0.1)  # nobody reads: the producer races ahead into the queue
    assert len(first) == KiB and rec.backlog_peak > KiB
    with pytest.raises(OverBudget, match="safety cap"):
        await anext(chunks)  # at once: the backlog was dropped, the error is next
    assert rec.chunks < 1000 and rec.backlog_peak <= 8 * KiB and rec.backlog == 0
    assert rec.stopped is not None and "safety cap" in rec.stopped


async def test_a_client_leaving_stops_the_anti_patterns_producer() -> None:
    ex = Exchange()

    def leave(message: dict[str, object]) -> None:
        if message.get("body"):
            ex.disconnect.set()

    ex.on_send = leave
    await asyncio.wait_for(
        call(app, path="/ignore-backpressure", query="chunk=64K&rate=64M&count=100000",
             exchange=ex),
        5,
    )  # fmt: skip
    await asyncio.sleep(0.05)
    rec = recent_records()[-1]
    assert rec["chunks"] < 100000 and rec["backlog"] == 0 and rec["ended"] is not None


async def test_the_failing_download_is_cut_mid_way() -> None:
    ex = await call(app, path="/fail", query="size=1M&after=200K")
    assert ex.status == 200 and ex.headers["content-length"] == str(MiB)
    assert not ex.complete and len(ex.body) < MiB


async def test_the_page_has_its_head_a_retried_section_and_a_fallback() -> None:
    ex = await call(app, path="/page")
    page = ex.body.decode()
    assert ex.status == 200 and ex.complete
    assert ex.bodies[0].decode().endswith("<h1>Head-first page</h1>")  # the head leaves alone
    assert "rendered on attempt 2" in page
    assert "Unavailable: TimeoutError: recommendations service down" in page
    assert page.endswith("</body></html>")


async def test_index_and_stats_are_json_and_html() -> None:
    await call(app, path="/generator", query=SMALL)
    stats = json.loads((await call(app, path="/stats")).body)
    assert stats[-1]["scenario"] == "generator"
    index = await call(app, path="/")
    assert index.headers["content-type"].startswith("text/html") and b"/leaky" in index.body


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [("/nope", "", 404), ("/generator", "count=x", 400), ("/fail", "size=1M&after=2M", 400)],
)
async def test_bad_requests_are_problems_not_500s(path: str, query: str, status: int) -> None:
    ex = await call(app, path=path, query=query)
    assert ex.status == status
    assert ex.headers["content-type"] == "application/problem+json"
    assert json.loads(ex.body)["status"] == status
