"""Which extra the one-line error names, and that it matches pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sluicegate.extras import COMMAND_EXTRAS, MODULE_EXTRAS, missing_extra_message

ROOT = Path(__file__).resolve().parents[2]
# distribution name in pyproject -> the top-level module it provides
_MODULE_OF = {"prometheus-client": "prometheus_client", "opentelemetry-api": "opentelemetry"}


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _modules(requirements: list[str], extras: dict[str, list[str]]) -> set[str]:
    modules: set[str] = set()
    for req in requirements:
        name = req.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        if name == "sluicegate":  # a self-reference: sluicegate[a,b]
            for extra in req.split("[")[1].rstrip("]").split(","):
                modules |= _modules(extras[extra], extras)
        else:
            modules.add(_MODULE_OF.get(name, name))
    return modules


def test_the_extra_named_for_each_module_brings_it() -> None:
    extras = _extras()
    for module, extra in MODULE_EXTRAS.items():
        assert module in _modules(extras[extra], extras), (module, extra)


def test_each_command_extra_brings_what_the_table_says() -> None:
    extras = _extras()
    for command, (extra, modules) in COMMAND_EXTRAS.items():
        assert modules <= _modules(extras[extra], extras), command


def test_the_base_install_needs_only_starlette() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [r.split(">")[0] for r in project["dependencies"]] == ["starlette"]


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("uvicorn", ["serve"], "sluicegate serve needs uvicorn, which is not installed: "
         "pip install 'sluicegate[server]'"),
        ("psutil", ["--no-color", "demo"], "sluicegate demo needs psutil, which is not "
         "installed: pip install 'sluicegate[demo]'"),
        ("redis", ["serve", "--ledger", "redis://x"], "sluicegate serve needs redis, which is "
         "not installed: pip install 'sluicegate[redis]'"),
        ("rich.console", [], "sluicegate needs rich, which is not installed: "
         "pip install 'sluicegate[client]'"),
    ],
)  # fmt: skip
def test_the_message_names_the_command_and_its_extra(
    module: str, argv: list[str], expected: str
) -> None:
    assert missing_extra_message(module, argv) == expected


@pytest.mark.parametrize("module", ["sluicegate.nowhere", "numpy", None, ""])
def test_a_module_no_extra_brings_is_not_explained_away(module: str | None) -> None:
    assert missing_extra_message(module, ["serve"]) is None


def test_python_m_sluicegate_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluicegate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout
