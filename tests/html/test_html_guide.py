"""The guide's Python examples run as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from html_support import assert_well_formed

from tests.asgi import call

GUIDE = Path(__file__).parents[2] / "docs" / "guides" / "failing-well-html.md"
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_has_its_examples() -> None:
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_guide_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {"__name__": f"guide_example_{index}"}
    exec(compile(BLOCKS[index], f"{GUIDE.name}[{index}]", "exec"), namespace)
    printed = capsys.readouterr().out
    for comment in re.findall(r"print\(.*\)  # (.*)", BLOCKS[index]):
        assert comment in printed  # the output the guide promises
    app = namespace.get("app")
    if app is None:
        return
    ex = asyncio.run(call(app))
    assert ex.status == 200 and ex.complete
    assert_well_formed(ex.body.decode())
    assert asyncio.run(call(app, path="/site.css")).status == 200
