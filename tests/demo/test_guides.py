"""The demo guides' Python examples run, and print what their comments say.

Every ```python block of a guide runs in one namespace, in order (a later block may
use what an earlier one defined). A line ``print(...)  # text`` promises ``text``;
a ``# text`` comment line right after a block's last ``print`` promises that output
line too (for prints in a loop).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

GUIDES_DIR = Path(__file__).resolve().parents[2] / "docs" / "guides"
GUIDES = [
    "streaming-basics.md",
    "backpressure.md",
    "pull-sources.md",
    "generators-and-pipes.md",
    "buffer-limits.md",
    "leaky-streams.md",
    "pausing.md",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"print\(.*\)\s+#\s(.+)$")
TRAILING = re.compile(r"^# (.+)$")


def expected_output(code: str) -> list[str]:
    """The lines a block promises to print, in order."""
    lines = code.splitlines()
    out = [m.group(1).strip() for line in lines if (m := INLINE.search(line))]
    # Comment lines after the last statement: the output of a loop's print.
    tail: list[str] = []
    for line in reversed(lines):
        m = TRAILING.match(line)
        if not m:
            break
        tail.insert(0, m.group(1).strip())
    return out + tail


def test_expected_output_reads_both_comment_styles() -> None:
    code = "for x in (1, 2):\n    print(x)\n# 1\n# 2\nprint('a')  # a\n"
    assert expected_output(code) == ["a"]
    assert expected_output("for x in (1, 2):\n    print(x)\n# 1\n# 2\n") == ["1", "2"]


@pytest.mark.parametrize("name", GUIDES)
def test_guide_examples_run_and_print_what_they_say(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = BLOCK.findall((GUIDES_DIR / name).read_text(encoding="utf-8"))
    assert blocks, f"{name} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__guide__"}
    for index, code in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{name}[{index}]", "exec"), namespace)
        assert out.getvalue().splitlines() == expected_output(code), f"{name}[{index}]"
