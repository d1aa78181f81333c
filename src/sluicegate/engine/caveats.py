"""Stacks that break sluicegate's promises: found from the ASGI scope and ``send``, told once.

Some layers around a response undo what sluicegate does, and nothing fails loudly:

* **Starlette's ``BaseHTTPMiddleware``** (``@app.middleware("http")`` in FastAPI)
  relays the body through a memory stream: a failure after the head becomes a clean
  end (curl exits 0, the client keeps a truncated file as whole) and it holds a
  second chunk;
* **Django's stock ASGI handler** sends a sluicegate response without the byte
  budget (:mod:`sluicegate.adapters.django` reports that one itself).

No server is on the list: hypercorn over HTTP/2 was reported to buffer whole bodies,
but with sluicegate's messages (at most 64 KiB) it was measured to hold one chunk,
like the others (``docs/compatibility.md``). A server caveat would be found from the
scope (``http_version``) and the server's own ``send`` at the end of the chain.

:func:`check` looks at one request's scope and ``send`` (it walks the chain of
``send`` wrappers through their closures; no framework is imported), logs one
warning per caveat per process, and counts the streams each caveat was seen on;
:func:`snapshot` gives the counts to the doctor's probe, which reports them as the
``stack-caveats`` finding (``docs/diagnoses/stack-caveats.md``). Every
:class:`~sluicegate.StreamResponse` calls it once, as it starts; it imports only the
standard library.

    >>> async def send(message): ...
    >>> found(scope={"type": "http", "http_version": "1.1"}, send=send)
    []
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CAVEATS", "Caveat", "check", "found", "reset", "snapshot", "warn_once"]

logger = logging.getLogger("sluicegate")


@dataclass(frozen=True, slots=True)
class Caveat:
    """A known way a stack breaks a promise: its id and the warning a person reads."""

    id: str
    message: str


BASE_HTTP_MIDDLEWARE = Caveat(
    "base-http-middleware",
    "sluicegate is running under Starlette's BaseHTTPMiddleware: a failure after the "
    "headers will look like a clean end to clients (curl exits 0) and each stream holds "
    "a second chunk. Write that middleware as a pure ASGI middleware instead "
    "(see docs/diagnoses/stack-caveats.md).",
)
#: Every caveat :func:`found` can report.
CAVEATS = (BASE_HTTP_MIDDLEWARE,)

# How many wrappers deep to look for the server's own send: Starlette and FastAPI add
# three or four; more than this is not worth the time on every request.
_MAX_DEPTH = 12

_lock = threading.Lock()
_warned: set[str] = set()
_counts: dict[str, int] = {}


def found(scope: Mapping[str, Any], send: Callable[..., Any]) -> list[Caveat]:
    """The caveats that apply to a request with this ``scope`` and ``send``."""
    modules = [_module(fn) for fn in _send_chain(send)]
    caveats = []
    if any(m == "starlette.middleware.base" for m in modules):
        caveats.append(BASE_HTTP_MIDDLEWARE)
    return caveats


def check(scope: Mapping[str, Any], send: Callable[..., Any]) -> list[Caveat]:
    """Count and (once per process) log the caveats of this request; return them."""
    caveats = found(scope, send)
    for caveat in caveats:
        warn_once(caveat.id, caveat.message)
    return caveats


def warn_once(key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` is seen in this process; count every time."""
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1
        first = key not in _warned
        _warned.add(key)
    if first:
        logger.warning("%s", message)


def snapshot() -> dict[str, int]:
    """Streams seen under each caveat so far in this process (for the doctor's probe)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget what was seen and warned (for tests)."""
    with _lock:
        _warned.clear()
        _counts.clear()


def _send_chain(send: Any) -> Iterator[Any]:
    """``send`` and the sends it wraps: bound methods' owners, partials, closures."""
    todo = [send]
    seen: set[int] = set()
    while todo and len(seen) < _MAX_DEPTH:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        yield fn
        if isinstance(fn, functools.partial):
            todo.append(fn.func)
            continue
        owner = getattr(fn, "__self__", None)
        if owner is not None:
            yield owner
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value) and "send" in getattr(value, "__name__", "").lower():
                todo.append(value)


def _module(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = type(obj).__module__
    return module
