"""What every sluicegate command shares: one-line usage errors and option parsing.

A bad argument is one ``Error: ...`` line and exit code 2, never the usage block and
never a traceback::

    @click.command(cls=OneLineCommand)
    @click.option("--rate")
    def cmd(rate: str | None) -> None:
        bytes_per_s = parse_option(parse_rate, rate, "--rate")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, overload

import click

from sluicegate.errors import ConfigError

T = TypeVar("T")

#: The exit code of a usage error, as click and the POSIX tradition have it.
USAGE = 2


class UsageFailure(click.ClickException):
    """A usage error shown as a single ``Error: ...`` line."""

    exit_code = USAGE


class OneLineCommand(click.Command):
    """A click command whose usage errors are one line, not the usage block."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise UsageFailure(f"{exc.format_message()} (see --help)") from None


def fail(message: str) -> NoReturn:
    """Stop with a one-line usage error."""
    raise UsageFailure(message)


@overload
def parse_option(parser: Callable[[str], T], value: str, option: str) -> T: ...


@overload
def parse_option(parser: Callable[[str], T], value: None, option: str) -> None: ...


@overload
def parse_option(parser: Callable[[str], T], value: str | None, option: str) -> T | None: ...


def parse_option(parser: Callable[[str], T], value: str | None, option: str) -> T | None:
    """``parser(value)``, with a :class:`ConfigError` turned into a one-line usage error."""
    if value is None:
        return None
    try:
        return parser(value)
    except ConfigError as exc:
        fail(f"{option}: {exc}")
