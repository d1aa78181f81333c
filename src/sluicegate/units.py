"""Parse the sizes, rates and durations people type on a command line (sans-IO).

Binary suffixes follow curl's ``--limit-rate``: ``K``, ``M``, ``G`` (and ``KiB``,
``MiB``, ``GiB``) are powers of 1024. Suffixes spelled with ``B`` after a decimal
prefix (``KB``, ``MB``, ``GB``) are powers of 1000, as disk makers and SI use them::

    >>> parse_size("64K"), parse_size("1.5MB"), parse_rate("10M/s")
    (65536, 1500000, 10485760.0)
    >>> parse_duration("1.5s"), parse_duration("250ms"), parse_duration("2m")
    (1.5, 0.25, 120.0)
"""

from __future__ import annotations

import math
import re

from sluicegate.errors import ConfigError

__all__ = ["format_duration", "format_size", "parse_duration", "parse_rate", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def _split(text: str, what: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None:
        raise ConfigError(f"bad {what} {text!r}: expected a number and an optional unit")
    return float(match.group(1)), match.group(2)


def parse_size(text: str) -> int:
    """Parse a byte count such as ``512``, ``64K``, ``1.5MB`` or ``2GiB``.

    Raises :class:`~sluicegate.errors.ConfigError` naming the bad part.
    """
    number, unit = _split(text, "size")
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ConfigError(
            f"bad size {text!r}: unknown unit {unit!r} (use B, K, M, G, KiB, MiB, GiB, KB, MB, GB)"
        )
    return int(number * factor)


def parse_rate(text: str) -> float:
    """Parse a rate in bytes per second: ``100K``, ``10M``, ``1.5MB/s``.

    The ``/s`` is optional. A rate must be above zero.
    """
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        rate = float(parse_size(body)) if body else -1.0
    except ConfigError:
        raise ConfigError(
            f"bad rate {text!r}: expected bytes per second such as 64K, 10M or 1.5MB/s"
        ) from None
    if rate <= 0:
        raise ConfigError(f"bad rate {text!r}: must be more than 0 bytes per second")
    return rate


def parse_duration(text: str) -> float:
    """Parse a duration in seconds: ``19``, ``19s``, ``250ms``, ``2m``, ``1h``.

    ``inf`` (or ``forever``) gives ``math.inf``.
    """
    if text.strip().lower() in ("inf", "forever"):
        return math.inf
    number, unit = _split(text, "duration")
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise ConfigError(f"bad duration {text!r}: unknown unit {unit!r} (use ms, s, m or h)")
    return number * factor


def format_size(n: float) -> str:
    """Format a byte count with a binary suffix, e.g. ``1.5 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """Format seconds for people: ``850 ms``, ``3.2 s``, ``inf``."""
    if math.isinf(seconds):
        return "inf"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
