"""``docs/compatibility.md`` is generated from the matrix: it must cover every cell.

Regenerate it with ``python -m tests.stacks.compat`` when a server, framework or check
is added.
"""

from __future__ import annotations

from tests.stacks import compat, matrix


def test_the_page_has_every_server_framework_and_check() -> None:
    text = compat.OUT.read_text()
    header = "| framework | " + " | ".join(matrix.SERVERS) + " |"
    assert header in text
    for name in compat.FRAMEWORK_NAMES.values():
        assert f"| {name} |" in text
    for title in compat.CHECK_TITLES.values():
        assert f"## {title}" in text
