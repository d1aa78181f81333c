"""The stamp a load-test event carries in its ``data`` (its number and when it was
published), and the schedule such events are published on.

::

    {"n": 41, "published": 1764435600.123456, "pad": "xxxx"}

``sluicegate serve``'s ``/events`` (:mod:`sluicegate.events.feed`), the demo's live feed
and the benchmark apps publish it; the SSE load client
(:mod:`sluicegate.client.sse_tally`) reads it back to count lost and doubled events and
to time their delivery (same machine, same clock). It lives here, beside the feed, so
that the engine's side needs nothing from the client tools. :func:`on_schedule` is the
clock those publishers keep.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

__all__ = ["on_schedule", "read_stamp", "stamped"]

# What stamped() writes, read without decoding the whole document: a load client
# reads tens of thousands of these a second on the cores the server runs on.
_STAMP = re.compile(rb'\{"n":(\d{1,18}),"published":(\d{1,12}(?:\.\d{1,9})?),')


def stamped(n: int, size: int = 0) -> str:
    """Event ``n``'s data, stamped with ``time.time()`` now, padded to ``size`` bytes.

    >>> data = stamped(7, 200)
    >>> len(data), read_stamp(data.encode())[0]
    (200, 7)
    """
    head = f'{{"n":{n},"published":{time.time():.6f},"pad":"'
    return head + "x" * max(0, size - len(head) - 2) + '"}'


def read_stamp(data: bytes) -> tuple[int, float] | None:
    """``(n, t)`` from an event's data, or ``None`` if it carries no stamp.

    What :func:`stamped` wrote is read from its first two fields (about a fifth of
    the cost of decoding the document); anything else is decoded as JSON.

    >>> read_stamp(b'{"n": 3, "published": 1.5, "pad": "xx"}'), read_stamp(b"hello")
    ((3, 1.5), None)
    """
    if data[:1] != b"{":
        return None
    ours = _STAMP.match(data)
    if ours is not None:
        return int(ours[1]), float(ours[2])
    try:
        doc = json.loads(data)
        n, t = doc["n"], doc["published"]
    except (ValueError, KeyError, TypeError):
        return None
    if type(n) is not int or not isinstance(t, int | float):
        return None
    return n, float(t)


async def on_schedule(rate: float, count: int) -> AsyncIterator[tuple[int, float]]:
    """Yield ``(k, late)`` for ``k`` in ``range(count)``, each at ``t0 + k / rate``.

    The times are absolute (``time.monotonic``), so a tick that comes late, because
    the loop was busy or the publisher's own work took long, does not push back the
    ones after it; ``late`` says by how many seconds it missed its time (0 if it did
    not), which is how a load test shows that its publisher kept up.
    """
    t0 = time.monotonic()
    for k in range(count):
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield k, max(0.0, -delay)
