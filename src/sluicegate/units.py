"""Parse the sizes, rates and durations people type on a command line (sans-IO).

Binary suffixes follow curl's ``--limit-rate``: ``K``, ``M``, ``G`` (and ``KiB``,
``MiB``, ``GiB``) are powers of 1024. Suffixes spelled with ``B`` after a decimal
prefix (``KB``, ``MB``, ``GB``) are powers of 1000, as disk makers and SI use them::

    >>> parse_size("64K"), parse_size("1.5MB"), parse_rate("10M/s")
    (65536, 1500000, 10485760.0)
    >>> parse_duration("1.5s"), parse_duration("250ms"), parse_duration("2m")
    (1.5, 0.25, 120.0)

Every value is untrusted (a query string, a flag), so the parsers refuse what no
sane value needs: text longer than :data:`MAX_TEXT`, negatives, ``nan``/``inf``
spelled as numbers, and magnitudes above :data:`MAX_SIZE`, :data:`MAX_RATE` or
:data:`MAX_DURATION`. They compute with :class:`~decimal.Decimal`, not ``float``, so
309 nines cannot become an infinite float (and ``int(inf)`` an ``OverflowError``)
on the way to that check. Every refusal is a :class:`~sluicegate.errors.ConfigError`,
which the HTTP layer answers with a 400 and the CLI with a one-line error.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from sluicegate.errors import ConfigError

__all__ = [
    "MAX_DURATION",
    "MAX_RATE",
    "MAX_SIZE",
    "MAX_SOCKET_BUFFER",
    "MAX_TEXT",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

#: Largest size accepted: 1 PiB, far above any real buffer, file or download, and far
#: below where an ``int`` or a ``float`` would misbehave.
MAX_SIZE = 1 << 50
#: Largest rate accepted, in bytes per second (1 PiB/s).
MAX_RATE = float(MAX_SIZE)
#: Largest finite duration accepted: one year (``inf``/``forever`` say "no limit").
MAX_DURATION = 365 * 86400.0
#: Largest ``SO_SNDBUF``/``SO_RCVBUF`` accepted: ``setsockopt`` takes a C ``int``, which
#: Linux doubles, and the kernel caps the value at ``net.core.[rw]mem_max`` anyway.
MAX_SOCKET_BUFFER = 1 << 30
#: Longest text looked at: a value is a number and a unit, never a page of digits.
MAX_TEXT = 64

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
_DURATION_UNITS = {
    "": Decimal(1),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
    "m": Decimal(60),
    "min": Decimal(60),
    "h": Decimal(3600),
}
# ASCII only: str's \d also matches other scripts' digits, which Decimal would accept.
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", re.ASCII)


def _split(text: str, what: str) -> tuple[Decimal, str]:
    if len(text) > MAX_TEXT:
        raise ConfigError(f"bad {what} {text[:20]!r}...: longer than {MAX_TEXT} characters")
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None:
        raise ConfigError(f"bad {what} {text!r}: expected a number and an optional unit")
    return Decimal(match.group(1)), match.group(2)


def _bytes(text: str, what: str) -> Decimal:
    number, unit = _split(text, what)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ConfigError(
            f"bad {what} {text!r}: unknown unit {unit!r} "
            "(use B, K, M, G, KiB, MiB, GiB, KB, MB, GB)"
        )
    return number * factor


def parse_size(text: str) -> int:
    """Parse a byte count such as ``512``, ``64K``, ``1.5MB`` or ``2GiB``.

    Fractions of a byte are dropped. Raises :class:`~sluicegate.errors.ConfigError`
    naming the bad part, also above :data:`MAX_SIZE`.
    """
    value = _bytes(text, "size")
    if value > MAX_SIZE:
        raise ConfigError(f"bad size {text!r}: more than the {MAX_SIZE:,} bytes (1 PiB) allowed")
    return int(value)


def parse_rate(text: str) -> float:
    """Parse a rate in bytes per second: ``100K``, ``10M``, ``1.5MB/s``.

    The ``/s`` is optional. A rate must be above zero and at most :data:`MAX_RATE`.
    """
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    if not body:
        raise ConfigError(f"bad rate {text!r}: expected bytes per second such as 64K or 10M/s")
    value = _bytes(body, "rate")
    if value <= 0:
        raise ConfigError(f"bad rate {text!r}: must be more than 0 bytes per second")
    if value > Decimal(MAX_RATE):
        raise ConfigError(f"bad rate {text!r}: more than the 1 PiB/s allowed")
    return float(value)


def parse_duration(text: str, *, forever: bool = True) -> float:
    """Parse a duration in seconds: ``19``, ``19s``, ``250ms``, ``2m``, ``1h``.

    ``inf`` (or ``forever``) gives ``math.inf`` when ``forever`` is true (the
    default); otherwise, and for any finite value above :data:`MAX_DURATION`, it is a
    :class:`~sluicegate.errors.ConfigError`.
    """
    if text.strip().lower() in ("inf", "forever"):
        if forever:
            return math.inf
        raise ConfigError(f"bad duration {text!r}: must be finite here")
    number, unit = _split(text, "duration")
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise ConfigError(f"bad duration {text!r}: unknown unit {unit!r} (use ms, s, m or h)")
    value = number * factor
    if value > Decimal(MAX_DURATION):
        raise ConfigError(f"bad duration {text!r}: more than the one year allowed")
    return float(value)


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
