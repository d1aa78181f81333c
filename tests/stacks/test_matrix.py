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


#: Servers that offer ASGI's http.response.trailers (measured; see docs/compatibility.md).
TRAILERS = {"hypercorn-h2c", "uvicorn-h2c"}
ASGI_SERVERS = [kind for kind in matrix.SERVERS if not kind.startswith("aiohttp")]


@pytest.mark.parametrize("server", ASGI_SERVERS, indirect=True)
def test_trailers_where_the_server_offers_them(server: matrix.Server) -> None:
    if server.kind.startswith("granian"):
        # The plain-ASGI endpoint crashes on granian until the engine fix; granian
        # offers no trailers extension either way (its scope's extensions).
        pytest.skip("granian offers no http.response.trailers")
    assert matrix.check_trailers(server) == (server.kind in TRAILERS)


@pytest.mark.parametrize("server", ASGI_SERVERS, indirect=True)
def test_base_http_middleware_is_reported_on_every_server(server: matrix.Server) -> None:
    before = matrix.caveats_seen(server).get("base-http-middleware", 0)
    assert server.client.get(f"{server.base}/fastapi/body").status_code == 200
    assert matrix.caveats_seen(server).get("base-http-middleware", 0) == before
    assert server.client.get(f"{server.base}/fastapi-mw/body").status_code == 200
    assert matrix.caveats_seen(server).get("base-http-middleware", 0) == before + 1
