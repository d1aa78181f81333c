"""``pip install sluicegate`` without extras: the engine works and loads nothing optional.

Builds a fresh venv from this checkout with the machine's pip configuration (its local
index), so it tests the real ``dependencies`` list of pyproject.toml, not this venv.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("lean_check.py")


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("lean") / "venv"
    venv.create(where, with_pip=True)
    subprocess.run(
        [where / "bin" / "python", "-m", "pip", "install", "--quiet", str(ROOT)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return where


def _installed(venv_dir: Path) -> set[str]:
    out = subprocess.run(
        [venv_dir / "bin" / "python", "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return {p["name"].lower() for p in json.loads(out)}


@pytest.mark.slow
def test_a_plain_install_brings_starlette_and_no_tool_dependency(lean_venv: Path) -> None:
    installed = _installed(lean_venv)
    assert {"sluicegate", "starlette"} <= installed
    tools = {"uvicorn", "click", "httpx", "h11", "rich", "psutil", "plotly", "redis"}
    assert not tools & installed
    assert not {p for p in installed if p.startswith(("opentelemetry", "prometheus"))}


@pytest.mark.slow
def test_import_and_a_stream_load_no_optional_module(lean_venv: Path) -> None:
    done = subprocess.run(
        [lean_venv / "bin" / "python", "-I", CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=lean_venv,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["file"].startswith(str(lean_venv))  # the installed copy, not src/
    assert report["after_import"] == []
    assert report["after_serve"] == []
    assert report["served"] == {"status": 200, "body_ok": True, "ended": True}
    assert report["ledger_state"] == "completed"  # SQLite ledger without psutil
    assert report["doctor_error"] == "sluicegate.doctor.errors"
    assert report["exporters"] == {
        "sluicegate.observe.otel": "sluicegate.observe.otel needs opentelemetry: "
        "pip install 'sluicegate[otel]'",
        "sluicegate.observe.prometheus": "sluicegate.observe.prometheus needs "
        "prometheus_client: pip install 'sluicegate[prometheus]'",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["serve"], "server"), (["fetch", "http://127.0.0.1:9/"], "client"), (["doctor"], "doctor")],
)
def test_a_tool_without_its_extra_is_one_line_naming_it(
    lean_venv: Path, argv: list[str], extra: str
) -> None:
    done = subprocess.run(
        [lean_venv / "bin" / "sluicegate", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: sluicegate ")
    assert lines[0].endswith(f"pip install 'sluicegate[{extra}]'")
