"""The example app and ``sluicegate serve``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.cli.examples import app
from tests.asgi import call


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
