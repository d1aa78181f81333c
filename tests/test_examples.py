"""The example app and ``sluicegate serve``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.cli.examples import MAX_CHUNK, MAX_DOWNLOAD, app
from sluicegate.engine.response import StreamResponse
from tests.asgi import Exchange, call


async def test_hello_leaves_as_two_chunks_with_a_turn_and_one_without() -> None:
    ex = await call(app, path="/hello")
    assert ex.bodies == [b"Hello", b"World"]
    ex = await call(app, path="/hello", query="turn=0")
    assert ex.bodies == [b"HelloWorld"]


async def test_download_is_sized_and_whole() -> None:
    ex = await call(app, path="/download", query="size=3M&chunk=100K")
    assert ex.headers["content-length"] == str(3 * 1024 * 1024)
    assert len(ex.body) == 3 * 1024 * 1024 and ex.complete


async def test_unknown_path_and_bad_size_are_problems_not_500s() -> None:
    ex = await call(app, path="/nope")
    assert ex.status == 404 and json.loads(ex.body)["status"] == 404
    ex = await call(app, path="/download", query="size=lots")
    assert ex.status == 400 and "bad size" in json.loads(ex.body)["detail"]


def test_serve_rejects_a_bad_app_in_one_line() -> None:
    result = CliRunner().invoke(main, ["serve", "--app", "no.such.module:app"])
    assert result.exit_code == 2
    assert "cannot import 'no.such.module'" in result.output
    assert "Traceback" not in result.output


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("serve", "fetch", "swarm", "doctor", "demo"):
        assert name in result.output


@pytest.mark.parametrize(
    "query",
    [
        "size=" + "9" * 309,
        "chunk=" + "9" * 309,
        "size=1M&chunk=512M",
        "chunk=100G",
        "chunk=4097K",
        "chunk=0",
        "size=17G",
        "size=nan",
        "size=inf",
        "size=-1",
        "chunk=1e9",
        "size=",
        "chunk=%D9%A1%D9%A2",
    ],
)
async def test_the_client_does_not_choose_the_memory(query: str) -> None:
    """Sizes past the documented caps, and numbers that are not sizes, are 400s."""
    ex = await call(app, path="/download", query=query)
    assert ex.status == 400, ex.body
    assert ex.headers["content-type"] == "application/problem+json"
    assert json.loads(ex.body)["status"] == 400


async def test_the_caps_themselves_are_allowed() -> None:
    ex = await call(app, path="/download", query=f"size={MAX_CHUNK + 1}&chunk=4M")
    assert ex.status == 200 and len(ex.body) == MAX_CHUNK + 1 and ex.complete
    assert max(len(b) for b in ex.bodies) <= MAX_CHUNK
    ex = await call(app, path="/download", query="size=16G", method="HEAD")
    assert ex.headers["content-length"] == str(MAX_DOWNLOAD)


async def _fails_at_once() -> AsyncIterator[bytes]:
    raise MemoryError
    yield b""  # pragma: no cover


async def _fails_later() -> AsyncIterator[bytes]:
    yield b"x" * 1000
    await asyncio.sleep(0)
    raise MemoryError


async def test_an_allocation_failure_before_the_commit_is_a_clean_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("ERROR", logger="sluicegate"):
        ex = await call(StreamResponse(_fails_at_once()), path="/")
    assert ex.status == 500
    assert ex.headers["content-type"] == "application/problem+json"
    assert json.loads(ex.body)["error"] == "MemoryError"
    # One line, no traceback: under an attack a traceback per request is spam.
    assert [r.exc_info for r in caplog.records] == [None]
    assert "out of memory" in caplog.text


async def test_an_allocation_failure_after_the_commit_aborts_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ex = Exchange()
    with caplog.at_level("ERROR", logger="sluicegate"):
        # No exception reaches the server (it would print a traceback): the app
        # returns without the last message, so the connection closes incomplete.
        await call(StreamResponse(_fails_later()), path="/", exchange=ex)
    assert ex.status == 200 and ex.body == b"x" * 1000 and not ex.complete
    assert [r.exc_info for r in caplog.records] == [None]
    assert "aborted after 1000 bytes" in caplog.text
