"""``python -m sluicegate`` and the ``sluicegate`` console script.

The command line (click, and each tool's dependencies) is imported inside a guard: in
an install without a tool's extra, a missing dependency is one ``Error: ...`` line that
names the extra to install (exit code 1), not a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["run"]


def run() -> None:
    """Run the ``sluicegate`` command line (the console script's entry point)."""
    try:
        from sluicegate.cli import main

        main()
    except ModuleNotFoundError as exc:
        from sluicegate.extras import missing_extra_message

        message = missing_extra_message(exc.name, sys.argv[1:])
        if message is None:
            raise  # not an optional dependency: a bug, show it whole
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
