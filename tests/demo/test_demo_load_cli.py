"""The demo's two load commands: JSON written, or one ``Error:`` line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluicegate.demo import feedload, load
from sluicegate.errors import ConfigError


def test_a_run_is_written_as_json(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    assert load.write_run(str(out), lambda: {"fetch": {"bytes": 3}}) == 0
    assert json.loads(out.read_text()) == {"fetch": {"bytes": 3}}


def test_only_the_named_errors_become_exit_2(tmp_path: Path) -> None:
    def bad() -> dict[str, object]:
        raise ConfigError("no")

    assert load.write_run(str(tmp_path / "a.json"), bad) == 2
    with pytest.raises(ConfigError):
        load.write_run(str(tmp_path / "b.json"), bad, errors=(OSError,))
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("command", [load.main, feedload.main])
def test_a_bad_url_is_one_line_and_exit_2(
    command: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    assert command(["ftp://127.0.0.1/x", "--out", str(out)]) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert not out.exists()
