"""The matrix's aiohttp server.

``python -m tests.stacks.aiohttp_app --port N [--handler-cancellation]``
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

from sluicegate import StreamResponse
from sluicegate.adapters.aiohttp import stream
from tests.stacks import producers

PRODUCERS: dict[str, Any] = {
    "body": producers.body,
    "fail": producers.failing,
    "big": producers.big,
}


async def endless(request: web.Request) -> web.StreamResponse:
    content = producers.endless(request.match_info["token"])
    return await stream(request, StreamResponse(content))


async def slow(request: web.Request) -> web.StreamResponse:
    content = producers.slow(request.match_info["token"])
    return await stream(request, StreamResponse(content))


async def endpoint(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    return await stream(request, StreamResponse(PRODUCERS[name]()))


async def state(request: web.Request) -> web.Response:
    body = producers.state(request.match_info["token"])
    return web.Response(body=body, content_type="application/json")


def make_app() -> web.Application:
    """The aiohttp application with the matrix's endpoints under ``/aiohttp/``."""
    app = web.Application()
    app.router.add_get("/aiohttp/endless/{token}", endless)
    app.router.add_get("/aiohttp/slow/{token}", slow)
    app.router.add_get("/aiohttp/{name}", endpoint)
    app.router.add_get("/_state/{token}", state)
    return app


def main() -> None:
    """Serve on 127.0.0.1."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--handler-cancellation", action="store_true")
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=args.port,
        handler_cancellation=args.handler_cancellation,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
