"""No function in ``src/`` is more complex than radon's rank C (cyclomatic 20).

A long function is split at its phases instead (as httpcore splits
``handle_async_request``); the engine's two hot loops are written to stay within it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

radon_complexity = pytest.importorskip("radon.complexity")

SRC = Path(__file__).resolve().parent.parent / "src" / "sluicegate"


def test_no_function_in_src_ranks_above_c() -> None:
    too_complex = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50  # the walk found the package
    for path in files:
        for block in radon_complexity.cc_visit(path.read_text()):
            rank = radon_complexity.cc_rank(block.complexity)
            if rank > "C":
                where = f"{path.relative_to(SRC)}:{block.lineno}"
                too_complex.append(f"{where} {block.fullname} {rank} ({block.complexity})")
    assert not too_complex, "\n".join(too_complex)
