"""The one command line: ``sluicegate serve | fetch | swarm | doctor | demo``.

Subcommands are imported only when run, so ``sluicegate --help`` stays fast and a
tool's dependencies never load for another.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> "module:attribute" of a click command
_COMMANDS = {
    "serve": "sluicegate.serve:serve_command",
    "fetch": "sluicegate.client.cli:fetch_command",
    "swarm": "sluicegate.client.cli:swarm_command",
    "doctor": "sluicegate.doctor.cli:doctor_command",
    "demo": "sluicegate.demo.cli:demo_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sluicegate")
def main() -> None:
    """Stream HTTP responses with bounded memory, and measure that they are."""
