"""Finding the stacks that break sluicegate's promises, from the scope and ``send``."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.routing import Route

from sluicegate.engine import caveats


class Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Any, call_next: Any) -> Any:
        return await call_next(request)


class PureASGI:
    """The same middleware written as pure ASGI: it wraps send too, harmlessly."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_wrapper(message: Any) -> None:
            await send(message)

        await self.app(scope, receive, send_wrapper)


def recording_app(middleware: list[Middleware]) -> tuple[Starlette, list[list[str]]]:
    seen: list[list[str]] = []

    class Endpoint:  # a raw ASGI endpoint: it gets the send the middleware passes on
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append([c.id for c in caveats.found(scope, send)])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    return Starlette(routes=[Route("/", Endpoint())], middleware=middleware), seen


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ([], []),
        ([Middleware(PureASGI)], []),
        ([Middleware(Passthrough)], ["base-http-middleware"]),
        ([Middleware(PureASGI), Middleware(Passthrough)], ["base-http-middleware"]),
        ([Middleware(Passthrough), Middleware(PureASGI)], ["base-http-middleware"]),
    ],
)
async def test_base_http_middleware_is_found_through_other_wrappers(
    middleware: list[Middleware], expected: list[str]
) -> None:
    app, seen = recording_app(middleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/")).text == "ok"
    assert seen == [expected]


def test_partials_and_bound_methods_are_followed() -> None:
    class Server:
        async def send(self, message: Any) -> None: ...

    Server.__module__ = "starlette.middleware.base"
    wrapped = functools.partial(Server().send)
    assert [c.id for c in caveats.found({"http_version": "1.1"}, wrapped)] == [
        "base-http-middleware"
    ]


def test_a_cycle_of_wrappers_ends() -> None:
    async def send(message: Any) -> None:
        await send(message)  # refers to itself through its closure

    assert caveats.found({}, send) == []


def test_warns_once_per_process_and_counts_every_stream(caplog: pytest.LogCaptureFixture) -> None:
    caveats.reset()
    try:
        with caplog.at_level("WARNING", logger="sluicegate"):
            for _ in range(3):
                caveats.warn_once("base-http-middleware", "one clear warning")
        assert caplog.text.count("one clear warning") == 1
        assert caveats.snapshot() == {"base-http-middleware": 3}
    finally:
        caveats.reset()


async def test_a_plain_stream_response_warns_under_base_http_middleware(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sluicegate import StreamResponse

    async def rows() -> Any:
        yield b"a,b\n"

    def endpoint(request: Any) -> StreamResponse:
        return StreamResponse(rows(), media_type="text/csv")

    def app(middleware: list[Middleware]) -> Starlette:
        return Starlette(routes=[Route("/", endpoint)], middleware=middleware)

    caveats.reset()
    try:
        with caplog.at_level("WARNING", logger="sluicegate"):
            for middleware in ([], [Middleware(PureASGI)]):
                transport = httpx.ASGITransport(app=app(middleware))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    assert (await c.get("/")).text == "a,b\n"
            assert caveats.snapshot() == {}
            transport = httpx.ASGITransport(app=app([Middleware(Passthrough)]))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for _ in range(2):
                    assert (await c.get("/")).text == "a,b\n"
        assert caveats.snapshot() == {"base-http-middleware": 2}
        assert caplog.text.count("BaseHTTPMiddleware") == 1
    finally:
        caveats.reset()
