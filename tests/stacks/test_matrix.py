"""The four checks over servers × frameworks, on real servers and real clients.

One server process per server kind (module-scoped), every framework in it by path
prefix; one small case per check. Cells with a known cause of failure (see
:data:`tests.stacks.matrix.KNOWN`) are expected failures with that reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stacks import matrix

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


CELLS = [(kind, fw) for kind in matrix.SERVERS for fw in matrix.frameworks(kind)]


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[matrix.Server]:
    program = matrix.SERVERS[request.param][0]
    pytest.importorskip(program)
    with matrix.serving(request.param) as running:
        yield running


@pytest.mark.parametrize("check", matrix.CHECKS)
@pytest.mark.parametrize(("server", "framework"), CELLS, indirect=["server"])
def test_cell(server: matrix.Server, framework: str, check: str, tmp_path: Path) -> None:
    result = matrix.run_check(server, framework, check, tmp_path)
    reason = matrix.known(server.kind, framework, check)
    if not result.passed and reason is not None:
        pytest.xfail(f"{reason} ({result.shown})")
    assert result.passed, f"{server.kind} / {framework} / {check}: {result.shown} {result.error}"
