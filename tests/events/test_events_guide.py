"""docs/guides/live-events.md: its Python examples run, in order, and print what they say.

The same rules as the other guides (tests/demo/test_guides.py, whose reader of
expected output this reuses); the Redis example runs against the tests' redis-server.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.demo.test_guides import BLOCK, expected_output

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "live-events.md"


def test_live_events_guide_examples_run_and_print_what_they_say(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    blocks = BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "__guide__"}
    for number, code in enumerate(blocks, 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"live-events.md block {number}", "exec"), namespace)
        assert out.getvalue().splitlines() == expected_output(code), f"block {number}"
