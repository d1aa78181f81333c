"""The transfer ledger: what happened to each streamed response, for the client to check.

Once a response's headers are sent its status cannot change, so a stream that fails
midway looks, on the wire, much like one that succeeded. The ledger records every
transfer's outcome (state, bytes, digest, error) and lets the client post a receipt of
what it received and get a verdict back::

    ledger = SQLiteLedger("transfers.db")          # or RedisLedger("redis://...")
    app = Starlette(routes=[Mount("/transfers", LedgerApp(ledger))])

Pick a backend with :func:`open_ledger` from a URL: ``sqlite:///var/lib/app/ledger.db``
(or a plain path) or ``redis://localhost:6379/0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.ledger.base import Ledger, Transfer
from sluicegate.ledger.model import (
    FINAL_STATES,
    STATES,
    TRANSFER_ID_HEADER,
    ErrorInfo,
    InvalidTransition,
    Receipt,
    StateName,
    TransferRecord,
    TransferState,
    Verdict,
    VerdictReason,
    describe_error,
    digest_of,
    format_digest,
    is_transfer_id,
    judge,
    new_transfer_id,
    parse_digest,
    state_for_error,
)

if TYPE_CHECKING:
    from sluicegate.ledger.mount import LedgerMount
    from sluicegate.ledger.redis import RedisLedger
    from sluicegate.ledger.routes import LedgerApp, ledger_routes
    from sluicegate.ledger.sqlite import SQLiteLedger

__all__ = [
    "FINAL_STATES",
    "STATES",
    "TRANSFER_ID_HEADER",
    "ErrorInfo",
    "InvalidTransition",
    "Ledger",
    "LedgerApp",
    "LedgerError",
    "LedgerMount",
    "Receipt",
    "RedisLedger",
    "SQLiteLedger",
    "StateName",
    "Transfer",
    "TransferRecord",
    "TransferState",
    "UnknownTransfer",
    "Verdict",
    "VerdictReason",
    "describe_error",
    "digest_of",
    "format_digest",
    "is_transfer_id",
    "judge",
    "ledger_from_url",
    "ledger_routes",
    "new_transfer_id",
    "parse_digest",
    "state_for_error",
]


# The backends load on first use: the engine imports this package for ``Ledger`` alone,
# and ``import sluicegate`` must not pay for sqlite3, redis-py (~50 ms) or the routes.
_LAZY = {
    "RedisLedger": "sluicegate.ledger.redis",
    "SQLiteLedger": "sluicegate.ledger.sqlite",
    "LedgerApp": "sluicegate.ledger.routes",
    "LedgerMount": "sluicegate.ledger.mount",
    "ledger_routes": "sluicegate.ledger.routes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def ledger_from_url(url: str, **options: Any) -> Ledger:
    """A (not yet opened) ledger for ``url``; ``options`` go to the backend's constructor.

    ``sqlite:///abs/path.db``, ``sqlite:relative.db`` or a plain path pick
    :class:`SQLiteLedger`; ``redis://`` and ``rediss://`` URLs pick :class:`RedisLedger`.

    >>> ledger_from_url("sqlite:///tmp/transfers.db")
    <SQLiteLedger new>
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        from sluicegate.ledger.redis import RedisLedger

        return RedisLedger(url, **options)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise ConfigError(f"sqlite URL needs an absolute path: {url!r}")
        if not path:
            raise ConfigError(f"sqlite URL without a path: {url!r}")
    else:
        if "://" in url:
            raise ConfigError(f"unsupported ledger URL {url!r}: use sqlite:/// or redis://")
        path = url
    from sluicegate.ledger.sqlite import SQLiteLedger

    return SQLiteLedger(path, **options)
