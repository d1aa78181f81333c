"""The adapters' own promises, in process (the matrix checks them on real servers)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sluicegate import StreamResponse
from sluicegate.engine import caveats


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


# -- FastAPI ------------------------------------------------------------------------------


async def test_fastapi_generator_endpoint_is_pulled_directly() -> None:
    from fastapi import FastAPI

    from sluicegate.adapters.fastapi import streaming

    app = FastAPI()
    callers: list[str] = []

    @app.get("/rows", response_class=streaming("text/csv"))
    async def rows() -> Any:
        for i in range(3):
            # Who resumed us: FastAPI's wrapper keeps the last chunk alive while we
            # make the next; sluicegate's channel does not.
            callers.append(sys._getframe(1).f_code.co_name)
            yield f"{i}\n"

    async with client(app) as http:
        response = await http.get("/rows")
    assert response.text == "0\n1\n2\n"
    assert response.headers["content-type"].startswith("text/csv")
    assert callers and "_async_stream_raw" not in callers


async def test_fastapi_wrapper_would_be_the_caller_without_the_adapter() -> None:
    # The premise of the test above: with sluicegate's plain class, FastAPI's wrapper
    # is what pulls the endpoint's generator.
    from fastapi import FastAPI

    app = FastAPI()
    callers: list[str] = []

    @app.get("/rows", response_class=StreamResponse)
    async def rows() -> Any:
        callers.append(sys._getframe(1).f_code.co_name)
        yield "x"

    async with client(app) as http:
        assert (await http.get("/rows")).text == "x"
    assert callers == ["_async_stream_raw"]


def test_fastapi_openapi_shows_the_real_media_type() -> None:
    from fastapi import FastAPI

    from sluicegate.adapters.fastapi import streaming

    app = FastAPI()

    @app.get("/export.csv", response_class=streaming("text/csv"))
    async def export() -> Any:
        return streaming("text/csv")(iter(["a,b\n"]))

    @app.get("/events", response_class=streaming("application/x-ndjson"))
    async def events() -> Any:
        yield b"{}\n"

    paths = app.openapi()["paths"]
    assert list(paths["/export.csv"]["get"]["responses"]["200"]["content"]) == ["text/csv"]
    assert list(paths["/events"]["get"]["responses"]["200"]["content"]) == ["application/x-ndjson"]
    assert streaming("text/csv") is streaming("text/csv")


def test_fastapi_unwrap_leaves_other_generators_alone() -> None:
    from sluicegate.adapters.fastapi import _unwrap

    async def _async_stream_raw(async_gen: Any) -> AsyncIterator[Any]:  # same name, not FastAPI
        yield b"x"

    wrapper = _async_stream_raw(None)
    assert _unwrap(wrapper) is wrapper
    assert _unwrap(b"bytes") == b"bytes"


# -- Litestar -----------------------------------------------------------------------------


def test_litestar_streamed_documents_the_stream() -> None:
    from litestar import Litestar, get

    from sluicegate.adapters.litestar import streamed

    @get("/export.csv", **streamed("text/csv", "Every customer"))
    async def export() -> StreamResponse:
        return StreamResponse(iter(["a\n"]), media_type="text/csv")

    @get("/archive.zip", **streamed("application/zip"))
    async def archive() -> StreamResponse:
        return StreamResponse(iter([b"PK"]), media_type="application/zip")

    app = Litestar([export, archive])
    paths = app.openapi_schema.to_schema()["paths"]
    ok = paths["/export.csv"]["get"]["responses"]["200"]
    assert ok["description"] == "Every customer"
    assert ok["content"]["text/csv"]["schema"]["type"] == "string"
    zipped = paths["/archive.zip"]["get"]["responses"]["200"]["content"]["application/zip"]
    assert zipped["schema"]["type"] == "string"
    problems = paths["/export.csv"]["get"]["responses"]["500"]["content"]
    assert "application/problem+json" in problems


# -- Django -------------------------------------------------------------------------------


async def test_django_middleware_headers_reach_the_client() -> None:
    from tests.stacks import django_app, producers

    async with client(django_app.app) as http:
        response = await http.get("/django/body")
    assert response.status_code == 200
    assert response.headers["x-stamp"] == "django-middleware"  # project middleware
    assert response.headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) == producers.BODY_CHUNKS * producers.BODY_CHUNK


async def test_django_middleware_that_replaces_the_stream_is_obeyed() -> None:
    from sluicegate.adapters.django import StreamingResponse
    from tests.stacks import django_app  # noqa: F401  (configures Django)

    async def words() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    response = StreamingResponse(words(), media_type="text/plain")
    original = response.streaming_content

    async def shout() -> AsyncIterator[bytes]:  # what GZipMiddleware-like code does
        async for part in original:
            yield part.upper()

    response.streaming_content = shout()
    response["Content-Encoding"] = "shout"
    sent = response.as_asgi()
    async with client(sent) as http:
        got = await http.get("/")
    assert got.content == b"HELLO WORLD"
    assert got.headers["content-encoding"] == "shout"
    assert got.headers["content-type"] == "text/plain; charset=utf-8"


async def test_django_stock_handler_still_streams_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.core.handlers.asgi import ASGIHandler as StockHandler

    from tests.stacks import django_app  # noqa: F401  (configures Django)

    caveats.reset()
    app = StockHandler()
    with caplog.at_level("WARNING", logger="sluicegate"):
        async with client(app) as http:
            response = await http.get("/django/body")
    assert response.status_code == 200
    assert caveats.snapshot().get("django-stock-handler") == 1
    assert "get_asgi_application" in caplog.text


# -- Quart --------------------------------------------------------------------------------


async def test_quart_views_return_sluicegate_responses() -> None:
    from quart import Quart

    from sluicegate.adapters.quart import install

    app = install(Quart(__name__))

    @app.get("/plain")
    async def plain() -> Any:
        return StreamResponse(iter([b"a", b"b"]), media_type="text/csv")

    @app.get("/tuple")
    async def with_status() -> Any:
        links = {"Link": "<a>; rel=a"}
        response = StreamResponse(iter([b"made"]), headers=links)
        response.raw_headers.append((b"link", b"<b>; rel=b"))
        return response, 201, {"X-Extra": "1"}

    @app.after_request
    async def stamp(response: Any) -> Any:
        response.headers["X-After"] = "yes"
        return response

    async with client(app) as http:
        plain_response = await http.get("/plain")
        created = await http.get("/tuple")
    assert plain_response.text == "ab"
    assert plain_response.headers["content-type"] == "text/csv; charset=utf-8"
    assert plain_response.headers["x-after"] == "yes"
    assert created.status_code == 201
    assert created.content == b"made"
    assert created.headers["x-extra"] == "1"
    assert created.headers.get_list("link") == ["<a>; rel=a", "<b>; rel=b"]


async def test_quart_without_install_refuses_as_before() -> None:
    from quart import Quart

    app = Quart(__name__)

    @app.get("/")
    async def view() -> Any:
        return StreamResponse(iter([b"x"]))

    async with client(app) as http:
        assert (await http.get("/")).status_code == 500


async def test_quart_response_timeout_does_not_cut_a_long_stream() -> None:
    import asyncio

    from quart import Quart

    from sluicegate.adapters.quart import install

    app = install(Quart(__name__))
    app.config["RESPONSE_TIMEOUT"] = 0.1  # Quart would end the body after 0.1 s

    async def slow() -> AsyncIterator[bytes]:
        for i in range(4):
            await asyncio.sleep(0.1)
            yield bytes([48 + i])

    @app.get("/slow")
    async def view() -> Any:
        return StreamResponse(slow())

    async with client(app) as http:
        assert (await http.get("/slow")).content == b"0123"
