"""The contracts in one place: hooks import no caller, one state vocabulary, one error map."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sluicegate
from sluicegate.errors import ClientDisconnected, send_errors
from sluicegate.interfaces import TransferState
from sluicegate.ledger.model import STATES

SRC = Path(sluicegate.__file__).parent
CALLERS = {"sluicegate.engine.response", "sluicegate.engine.pump"}


@pytest.mark.parametrize("hook", ["protect/budgets.py", "protect/guard.py"])
def test_a_hook_does_not_import_its_caller(hook: str) -> None:
    tree = ast.parse((SRC / hook).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & CALLERS


def test_the_ledger_and_the_engine_speak_of_the_same_states() -> None:
    assert {state.value for state in TransferState} == set(STATES)
    assert TransferState.COMPLETED == "completed"


def test_an_oserror_from_send_is_the_client_leaving() -> None:
    with pytest.raises(ClientDisconnected) as caught, send_errors:
        raise BrokenPipeError("gone")
    assert isinstance(caught.value.__cause__, BrokenPipeError)
    with pytest.raises(ValueError), send_errors:
        raise ValueError("not a disconnect")
