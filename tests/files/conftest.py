"""Real uvicorn servers (one per HTTP implementation) whose app each test sets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import running


class Switch:
    """An ASGI app that forwards to whatever ``app`` the current test put in it."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Switch]]:
    """(base URL, switch) of a uvicorn server on 127.0.0.1, kept for the module."""
    switch = Switch()
    with running(switch, http=request.param) as port:
        yield f"http://127.0.0.1:{port}", switch
