"""One ASGI app that serves every framework of the matrix, by path prefix.

``/asgi/``, ``/starlette/``, ``/fastapi/``, ``/fastapi-mw/`` (FastAPI under a
``BaseHTTPMiddleware``), ``/litestar/``, ``/quart/``, ``/django/`` each go to that
framework's app, which serves the endpoints of :mod:`tests.stacks.producers`.
Answered directly: ``/_state/<token>``, ``/_caveats`` (what
:mod:`sluicegate.engine.caveats` has seen), ``/bare/big`` (a bare ``send()`` loop)
and ``/asgi/digest`` (a body with a ``Repr-Digest`` trailer). One server process per
server kind then covers every framework.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from litestar import Litestar
from litestar import get as litestar_get
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from sluicegate import StreamResponse
from sluicegate.adapters.fastapi import streaming
from sluicegate.adapters.litestar import streamed
from sluicegate.adapters.quart import install
from sluicegate.engine import caveats
from tests.stacks import django_app, producers

PRODUCERS: dict[str, Any] = {
    "body": producers.body,
    "fail": producers.failing,
    "big": producers.big,
}


# -- plain ASGI ------------------------------------------------------------------------


async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """No framework: StreamResponse as the ASGI app."""
    name, _, token = scope["path"].removeprefix("/asgi/").partition("/")
    if name == "digest":  # the body with a Repr-Digest trailer, where the server can
        await StreamResponse(producers.body(), digest=True)(scope, receive, send)
        return
    content = producers.endless(token) if name == "endless" else PRODUCERS[name]()
    await StreamResponse(content)(scope, receive, send)


# -- Starlette ---------------------------------------------------------------------------


async def starlette_endpoint(request: Request) -> StreamResponse:
    name = request.path_params["name"]
    return StreamResponse(PRODUCERS[name]())


async def starlette_endless(request: Request) -> StreamResponse:
    return StreamResponse(producers.endless(request.path_params["token"]))


starlette_app = Starlette(
    routes=[
        Route("/starlette/endless/{token}", starlette_endless),
        Route("/starlette/{name}", starlette_endpoint),
    ]
)

# -- FastAPI: generator endpoints with the adapter's response class ----------------------

fastapi_app = FastAPI()
Octets = streaming("application/octet-stream")


@fastapi_app.get("/fastapi/body", response_class=Octets)
async def fastapi_body() -> Any:
    async for chunk in producers.body():
        yield chunk


@fastapi_app.get("/fastapi/endless/{token}", response_class=Octets)
async def fastapi_endless(token: str) -> Any:
    async for chunk in producers.endless(token):
        yield chunk


@fastapi_app.get("/fastapi/fail", response_class=Octets)
async def fastapi_fail() -> Any:
    async for chunk in producers.failing():
        yield chunk


@fastapi_app.get("/fastapi/big", response_class=Octets)
async def fastapi_big() -> Any:
    # The endpoint makes its chunks itself: a loop over another generator would keep
    # the last chunk in its own frame while the next is made.
    for i in range(producers.BIG_CHUNKS):
        yield bytes([65 + i]) * producers.BIG_CHUNK


# -- FastAPI under Starlette's BaseHTTPMiddleware (a known caveat) ------------------------

fastapi_mw_app = FastAPI()


@fastapi_mw_app.middleware("http")
async def passthrough(request: Any, call_next: Any) -> Any:
    return await call_next(request)


@fastapi_mw_app.get("/fastapi-mw/endless/{token}", response_class=Octets)
async def fastapi_mw_endless(token: str) -> Any:
    return Octets(producers.endless(token))


@fastapi_mw_app.get("/fastapi-mw/{name}", response_class=Octets)
async def fastapi_mw_endpoint(name: str) -> Any:
    return Octets(PRODUCERS[name]())


# -- Litestar ----------------------------------------------------------------------------


@litestar_get("/litestar/endless/{token:str}", **streamed("application/octet-stream"))
async def litestar_endless(token: str) -> StreamResponse:
    return StreamResponse(producers.endless(token))


@litestar_get("/litestar/{name:str}", **streamed("application/octet-stream"))
async def litestar_endpoint(name: str) -> StreamResponse:
    return StreamResponse(PRODUCERS[name]())


litestar_app = Litestar([litestar_endless, litestar_endpoint], openapi_config=None)

# -- Quart -------------------------------------------------------------------------------

quart_app = install(Quart(__name__))


@quart_app.get("/quart/endless/<token>")
async def quart_endless(token: str) -> StreamResponse:
    return StreamResponse(producers.endless(token))


@quart_app.get("/quart/<name>")
async def quart_endpoint(name: str) -> StreamResponse:
    return StreamResponse(PRODUCERS[name]())


# -- the dispatcher ----------------------------------------------------------------------

APPS: dict[str, Any] = {
    "asgi": plain,
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "fastapi-mw": fastapi_mw_app,
    "litestar": litestar_app,
    "quart": quart_app,
    "django": django_app.app,
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route by the first path segment."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    first, _, rest = scope["path"].lstrip("/").partition("/")
    if first == "_state":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": producers.state(rest)})
        return
    if first == "_caveats":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(caveats.snapshot()).encode()})
        return
    if first == "bare":
        await producers.bare_big(send)
        return
    await APPS[first](scope, receive, send)
