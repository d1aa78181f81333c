"""HTMLStream in process: head first, sections in order, fallbacks, cancellation on disconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from html_support import assert_well_formed

from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError
from sluicegate.http.html import HTMLStream, Retry, Section, error_text
from tests.asgi import Exchange, call

HEAD = (
    "<!doctype html><html><head><meta charset=utf-8><title>t</title>"
    '<link rel="stylesheet" href="/style.css"><link rel="preload" href="/app.js" as="script">'
    "</head><body><main>"
)
TAIL = "</main></body></html>"
FAST = Retry(times=3, timeout=1.0, backoff=0.001, max_backoff=0.002)


def fragment(text: str, delay: float = 0.0) -> Any:
    async def render() -> str:
        await asyncio.sleep(delay)
        return f"<section><h2>{text}</h2><p>{text} body<br></p></section>"

    render.__qualname__ = text
    return render


def failing(error: BaseException, calls: list[int] | None = None) -> Any:
    async def render() -> str:
        if calls is not None:
            calls.append(1)
        raise error

    return render


async def test_success_page_is_well_formed_and_in_order() -> None:
    page = HTMLStream(
        HEAD, [Section(fragment("one", 0.02)), Section(fragment("two"))], tail=TAIL, retry=FAST
    )
    assert isinstance(page, StreamResponse)
    ex = await call(page)
    assert ex.status == 200 and ex.complete
    assert ex.headers["content-type"] == "text/html; charset=utf-8"
    assert "content-length" not in ex.headers
    document = ex.body.decode()
    assert document.index("one body") < document.index("two body")
    assert_well_formed(document)
    assert [(o.name, o.ok, o.attempts, o.written) for o in page.outcomes] == [
        ("one", True, 1, True),
        ("two", True, 1, True),
    ]


async def test_head_is_its_own_first_message_and_leaves_while_the_section_awaits() -> None:
    events: list[str] = []

    async def render() -> str:
        events.append("render called")
        await asyncio.sleep(0.05)
        events.append("render done")
        return "<p>x</p>"

    ex = Exchange(on_send=lambda m: events.append(bytes(m.get("body", b"")).decode()))
    await call(HTMLStream(HEAD, [Section(render)], tail=TAIL), exchange=ex)
    assert ex.bodies[0] == HEAD.encode()
    assert b"".join(ex.bodies[1:]) == b"<p>x</p>" + TAIL.encode()
    assert events.index("render called") < events.index("render done")
    assert events.index(HEAD) < events.index("render done")


async def test_failed_section_gets_its_fallback_escaped_and_status_stays_200(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    boom = RuntimeError("db said <b>no</b> & left")
    page = HTMLStream(
        HEAD,
        [
            Section(fragment("ok")),
            Section(
                failing(boom, calls),
                fallback='<div class="gone" style="a{b:c}">Unavailable: {error}</div>',
                name="orders",
            ),
            Section(fragment("after")),
        ],
        tail=TAIL,
        retry=FAST,
    )
    with caplog.at_level(logging.WARNING, logger="sluicegate.http.html"):
        ex = await call(page)
    document = ex.body.decode()
    assert ex.status == 200 and ex.complete
    assert len(calls) == 3
    assert (
        '<div class="gone" style="a{b:c}">Unavailable: '
        "RuntimeError: db said &lt;b&gt;no&lt;/b&gt; &amp; left</div>" in document
    )
    assert "<b>no</b>" not in document
    assert_well_formed(document)
    assert document.index("ok body") < document.index("Unavailable") < document.index("after")
    outcome = page.outcomes[1]
    assert (outcome.name, outcome.ok, outcome.attempts, outcome.error) == ("orders", False, 3, boom)
    records = [r for r in caplog.records if r.name == "sluicegate.http.html"]
    assert [r.levelname for r in records] == ["WARNING", "WARNING", "ERROR"]
    assert all("'orders'" in r.getMessage() for r in records)
    assert records[-1].exc_info is not None and records[-1].exc_info[1] is boom


async def test_fallback_function_receives_the_exception() -> None:
    seen: list[BaseException] = []
    boom = ValueError("<script>alert(1)</script>")

    def fallback(exc: BaseException) -> str:
        seen.append(exc)
        return f"<p class=error>{error_text(exc)}</p>"

    page = HTMLStream(HEAD, [Section(failing(boom), fallback)], tail=TAIL, retry=FAST)
    document = (await call(page)).body.decode()
    assert seen == [boom]
    assert "<p class=error>ValueError: &lt;script&gt;alert(1)&lt;/script&gt;</p>" in document
    assert "<script>" not in document
    assert_well_formed(document)


async def test_a_failing_fallback_leaves_the_section_empty_and_the_page_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(exc: BaseException) -> str:
        raise LookupError("template missing")

    def wrong_type(exc: BaseException) -> str:
        return 42  # type: ignore[return-value]

    page = HTMLStream(
        HEAD,
        [
            Section(failing(ValueError()), broken, name="a"),
            Section(failing(ValueError()), wrong_type, name="b"),
        ],
        tail=TAIL,
        retry=Retry(times=1),
    )
    with caplog.at_level(logging.ERROR, logger="sluicegate.http.html"):
        ex = await call(page)
    assert ex.body.decode() == HEAD + TAIL
    assert "fallback of section 'a' failed" in caplog.text
    assert "fallback of section 'b' failed" in caplog.text


async def test_a_render_returning_non_str_is_a_failure_not_retried() -> None:
    calls: list[int] = []

    async def render() -> str:
        calls.append(1)
        return b"<p>bytes</p>"  # type: ignore[return-value]

    page = HTMLStream(HEAD, [Section(render, "<p>{error}</p>", name="b")], tail=TAIL)
    document = (await call(page)).body.decode()
    assert calls == [1]
    assert "<p>TypeError: section &#x27;b&#x27; rendered bytes, not str</p>" in document


async def test_per_try_timeout_then_fallback() -> None:
    page = HTMLStream(
        HEAD,
        [Section(fragment("slow", delay=30), "<p>slow part unavailable</p>")],
        tail=TAIL,
        retry=Retry(times=2, timeout=0.02, backoff=0.001, max_backoff=0.001),
    )
    document = (await call(page)).body.decode()
    assert "<p>slow part unavailable</p>" in document
    assert isinstance(page.outcomes[0].error, TimeoutError)
    assert page.outcomes[0].attempts == 2
    assert_well_formed(document)


async def test_a_section_policy_overrides_the_page_policy() -> None:
    calls: list[int] = []
    page = HTMLStream(
        HEAD, [Section(failing(OSError(), calls), retry=Retry(times=1))], tail=TAIL, retry=FAST
    )
    await call(page)
    assert calls == [1]


async def test_concurrent_renders_overlap_but_are_written_in_order() -> None:
    running = 0
    peak = 0

    def tracked(text: str, delay: float) -> Any:
        async def render() -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(delay)
            finally:
                running -= 1
            return f"<p>{text}</p>"

        return render

    # The first is slowest: the others finish first but must wait their turn.
    sections = [Section(tracked(str(i), 0.08 - 0.02 * i)) for i in range(4)]
    page = HTMLStream(HEAD, sections, tail=TAIL, concurrency=3)
    document = (await call(page)).body.decode()
    assert document == HEAD + "<p>0</p><p>1</p><p>2</p><p>3</p>" + TAIL
    assert peak == 3


async def test_concurrent_failures_fall_back_in_place() -> None:
    page = HTMLStream(
        HEAD,
        [
            Section(fragment("a")),
            Section(failing(ValueError("x")), "<p>fb</p>"),
            Section(fragment("c")),
        ],
        tail=TAIL,
        retry=FAST,
        concurrency=3,
    )
    document = (await call(page)).body.decode()
    assert document.index("a body") < document.index("<p>fb</p>") < document.index("c body")
    assert_well_formed(document)


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_client_disconnect_cancels_pending_renders(concurrency: int) -> None:
    started: list[int] = []
    cancelled: list[int] = []

    def hanging(i: int) -> Any:
        async def render() -> str:
            started.append(i)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(i)
                raise
            return "<p>never</p>"

        return render

    ex = Exchange()

    def on_send(message: dict[str, Any]) -> None:
        if message.get("body"):  # the head arrived: the client leaves
            ex.disconnect.set()

    ex.on_send = on_send
    page = HTMLStream(
        HEAD,
        [Section(hanging(i)) for i in range(4)],
        tail=TAIL,
        retry=Retry(times=3, timeout=None),
        concurrency=concurrency,
    )
    await asyncio.wait_for(call(page, exchange=ex), 5)
    assert not ex.complete
    # The head leaves at its FLUSH, so the client may be gone before every render
    # task has taken its first step; none beyond the concurrency ever starts.
    assert set(started) <= set(range(concurrency))
    assert sorted(cancelled) == sorted(started)
    assert not [o for o in page.outcomes if o.written]
    # No render task outlives the response.
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("sluicegate-html")]
    assert leftovers == []


async def test_an_html_stream_is_one_response() -> None:
    page = HTMLStream(HEAD, [], tail=TAIL)
    assert (await call(page)).body.decode() == HEAD + TAIL
    with pytest.raises(ConfigError, match="build one per request"):
        await call(page)


async def test_status_and_headers_are_passed_through() -> None:
    page = HTMLStream(HEAD, [], tail=TAIL, status=404, headers={"cache-control": "no-store"})
    ex = await call(page)
    assert ex.status == 404 and ex.headers["cache-control"] == "no-store"


async def test_head_request_gets_headers_and_no_section_is_rendered() -> None:
    calls: list[int] = []
    ex = await call(HTMLStream(HEAD, [Section(failing(ValueError(), calls))]), method="HEAD")
    assert ex.status == 200 and ex.body == b"" and calls == []


async def _render() -> str:
    return ""


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: HTMLStream(b"<html>", []), "head and tail must be str"),  # type: ignore[arg-type]
        (lambda: HTMLStream(HEAD, [_render]), "sections must be Section objects"),  # type: ignore[list-item]
        (lambda: HTMLStream(HEAD, [], concurrency=0), "concurrency must be an int >= 1, not 0"),
        (lambda: HTMLStream(HEAD, [], retry=3), "retry must be a Retry, not 3"),  # type: ignore[arg-type]
        (lambda: HTMLStream(HEAD, [], status=204), "status must be a status with a body"),
        (lambda: Section(_render()), r"Section\(load\), not Section\(load\(\)\)"),  # type: ignore[arg-type]
        (lambda: Section(_render, fallback=3), "fallback must be a str or a function"),  # type: ignore[arg-type]
        (lambda: Section(_render, retry=Retry), "Section.retry must be a Retry"),  # type: ignore[arg-type]
    ],
)
def test_bad_page_arguments_are_config_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_section_name_defaults_to_the_render_function() -> None:
    assert Section(_render).name == "_render"
    assert Section(_render, name="sidebar").name == "sidebar"


async def test_disconnect_while_a_written_section_waits_for_room_cancels_renders_ahead() -> None:
    # The page's generator is parked at a yield (backpressure), not at an await of a
    # render: closing it must still cancel the sections rendering ahead.
    cancelled: list[int] = []

    def hanging(i: int) -> Any:
        async def render() -> str:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(i)
                raise
            return "never"

        return render

    async def big() -> str:
        return "<p>" + "x" * 100_000 + "</p>"

    ex = Exchange()

    async def on_send(message: dict[str, Any]) -> None:
        if len(message.get("body", b"")) > 1000:  # part of the big section: leave
            ex.disconnect.set()
            await asyncio.sleep(0.05)

    ex.on_send = on_send
    page = HTMLStream(
        HEAD,
        [Section(big), *(Section(hanging(i)) for i in range(1, 4))],
        tail=TAIL,
        retry=Retry(times=1, timeout=None),
        concurrency=4,
        high_water_mark=4096,
    )
    await asyncio.wait_for(call(page, exchange=ex), 5)
    assert not ex.complete
    assert sorted(cancelled) == [1, 2, 3]
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("sluicegate-html")]
    assert leftovers == []
