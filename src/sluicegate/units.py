"""Parse the human units the CLI and examples accept: sizes, rates, durations."""

from __future__ import annotations

import re

from sluicegate.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    """Bytes from ``"64K"``, ``"10M"``, ``"1.5MB"``, ``"2GiB"`` or ``"512"``.

    Like curl's ``--limit-rate``, K/M/G are powers of 1024.

    >>> parse_size("10M"), parse_size("64k"), parse_size("1.5KiB"), parse_size("7")
    (10485760, 65536, 1536, 7)
    """
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"not a size: {text!r} (try 64K, 10M, 1.5G)")
    number, unit, _ = m.groups()
    return int(float(number) * 1024 ** _POWERS[unit.lower()])


def parse_duration(text: str) -> float:
    """Seconds from ``"10ms"``, ``"1.5s"``, ``"2m"``, ``"1h"`` or ``"3"`` (seconds).

    >>> parse_duration("10ms"), parse_duration("19s"), parse_duration("2m"), parse_duration("3")
    (0.01, 19.0, 120.0, 3.0)
    """
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (try 10ms, 1.5s, 2m)")
    number, unit = m.groups()
    return float(number) * _SECONDS[(unit or "s").lower()]
