"""The ``sluicegate`` command line and what only it needs: serve, examples, a browser."""

from sluicegate.cli.main import main

__all__ = ["main"]
