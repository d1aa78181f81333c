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

from typing import Any

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.ledger.base import Ledger, Transfer
from sluicegate.ledger.model import (
    FINAL_STATES,
    STATES,
    TRANSFER_ID_HEADER,
    ErrorInfo,
    InvalidTransition,
    Receipt,
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
    "Receipt",
    "RedisLedger",
    "SQLiteLedger",
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


def __getattr__(name: str) -> Any:
    # redis-py costs ~50 ms to import; only users of the Redis backend pay for it.
    if name == "RedisLedger":
        from sluicegate.ledger.redis import RedisLedger

        return RedisLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        return SQLiteLedger(path, **options)
    if "://" in url:
        raise ConfigError(f"unsupported ledger URL {url!r}: use sqlite:/// or redis://")
    return SQLiteLedger(url, **options)
