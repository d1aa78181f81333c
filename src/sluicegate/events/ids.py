"""Event ids: ``<int>-<int>``, ordered as pairs, for both backends (sans-IO).

Redis Streams ids are ``<milliseconds>-<sequence>``; the in-memory log writes
``<epoch>-<n>`` (``epoch`` made when the log is created, ``n`` counting from 1), so one
parser and one order serve both, and an id from another process's memory log (another
epoch) is recognised as foreign instead of being read as a position in this one.

The id comes from the client's ``Last-Event-ID`` header, so it is parsed strictly and
bounded: anything else is :class:`~sluicegate.events.errors.BadLastEventId` (a 400).

>>> parse_id("1700000000000-3")
(1700000000000, 3)
>>> parse_id("12")
Traceback (most recent call last):
...
sluicegate.events.errors.BadLastEventId: Last-Event-ID must look like 123-4, not '12'
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

from sluicegate.events.errors import BadLastEventId

__all__ = ["ZERO", "Order", "format_id", "parse_id"]

#: An id's place in its topic: compare these, never the strings.
Order: TypeAlias = tuple[int, int]

#: The position before every event.
ZERO: Final[Order] = (0, 0)

# Twenty digits hold any 64-bit number (Redis ids are two of them); more is not an id.
_ID: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


def parse_id(text: str) -> Order:
    """The order of an id; :class:`BadLastEventId` if it is not ``<int>-<int>``."""
    match = _ID.fullmatch(text.strip())
    if match is None:
        shown = text if len(text) <= 64 else text[:64] + "..."
        raise BadLastEventId(f"Last-Event-ID must look like 123-4, not {shown!r}")
    return int(match.group(1)), int(match.group(2))


def format_id(order: Order) -> str:
    """The id text of an order: ``format_id((5, 2)) == "5-2"``."""
    return f"{order[0]}-{order[1]}"
