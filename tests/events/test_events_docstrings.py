"""The live-events modules' docstring examples run; redis-py stays unimported until used."""

from __future__ import annotations

import doctest
import subprocess
import sys
from types import ModuleType

import pytest

from sluicegate.events import feed, framing, ids, metrics, subscription


@pytest.mark.parametrize("module", [feed, framing, ids, metrics, subscription])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_importing_sluicegate_does_not_import_redis() -> None:
    code = (
        "import sys, sluicegate, sluicegate.events, sluicegate.cli.serve; "
        "from sluicegate.events import RedisBackend; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
