"""The one command line: ``sluicegate serve | fetch | swarm | doctor | demo``.

Subcommands are imported only when run, so ``sluicegate --help`` stays fast and a
tool's dependencies never load for another.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> ("module:attribute" of a click command, its one-line help)
_COMMANDS = {
    "serve": ("sluicegate.cli.serve:serve_command", "Serve an ASGI app (the examples by default)."),
    "fetch": ("sluicegate.client.cli:fetch_command", "Download slowly, pausably, resumably."),
    "swarm": ("sluicegate.client.cli:swarm_command", "Run many clients with mixed behaviour."),
    "doctor": ("sluicegate.doctor.cli:doctor_command", "Sample a server under load; diagnose."),
    "demo": ("sluicegate.demo.cli:demo_command", "Reproduce the article's experiments."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing must not import every tool: help stays fast and independent.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attr = entry[0].partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sluicegate")
def main() -> None:
    """Stream HTTP responses with bounded memory, and measure that they are."""
