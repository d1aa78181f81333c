"""The guides' Python examples run, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Guides whose examples are checked here (others have their own tests).
GUIDES = ["when-a-stream-fails.md", "../architecture.md", "observability.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXPECT = re.compile(r"print\(.*\)\s*#\s*(.+)$")


def blocks(name: str) -> list[str]:
    return BLOCK.findall((DOCS / "guides" / name).read_text())


@pytest.mark.parametrize("name", GUIDES)
def test_examples_run_and_print_what_they_say(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples may create files (a ledger database)
    for code in blocks(name):
        expected = [m.group(1).strip() for line in code.splitlines() if (m := EXPECT.search(line))]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{name}", "exec"), {"__name__": "__guide__"})
        assert out.getvalue().splitlines() == expected
