"""sluicegate: stream HTTP responses fast and with bounded memory.

The public API is what this module exports::

    from sluicegate import StreamResponse

    async def numbers():
        for i in range(1_000_000):
            yield f"{i}\\n"

    app = StreamResponse(numbers(), media_type="text/plain")  # an ASGI app

``import sluicegate`` loads the engine and the responses only (and Starlette, which they
build on): the ledger backends, the tools and their dependencies load when first used.
"""

from typing import TYPE_CHECKING, Any

from sluicegate.engine.channel import FLUSH, Channel, Chunk, Policy
from sluicegate.engine.metrics import StreamMetrics
from sluicegate.engine.pump import SendGuard
from sluicegate.engine.response import (
    Admission,
    AdmissionTicket,
    Defaults,
    GuardFactory,
    Refusal,
    StreamResponse,
    defaults,
)
from sluicegate.engine.sources import PullSource, Source
from sluicegate.errors import (
    ChannelClosed,
    ChannelFull,
    ClientDisconnected,
    ConfigError,
    LedgerError,
    OverBudget,
    ProducerFailed,
    SluicegateError,
    SourceChanged,
    StreamError,
    StreamTimedOut,
    UnknownTransfer,
)
from sluicegate.events import Broadcast, Event, EventStream
from sluicegate.http.files import FileResponse, StaticDirectory
from sluicegate.http.html import HTMLStream, Retry, Section, retry
from sluicegate.http.ranges import Representation
from sluicegate.http.seekable import SeekableResponse, SeekableSource
from sluicegate.http.spool import Spool
from sluicegate.http.zipstream import ZipMember, ZipStream
from sluicegate.protect.budgets import Budgets
from sluicegate.protect.guard import Guard, GuardPolicy

if TYPE_CHECKING:
    # "X as X": re-exported for type checkers, which do not see _LAZY below.
    from sluicegate.client.errors import DigestMismatch as DigestMismatch
    from sluicegate.client.errors import FetchError as FetchError
    from sluicegate.client.errors import HTTPStatusError as HTTPStatusError
    from sluicegate.client.errors import IncompleteTransfer as IncompleteTransfer
    from sluicegate.doctor.errors import DoctorError as DoctorError

__version__ = "0.1.0"

__all__ = [
    "FLUSH",
    "Admission",
    "AdmissionTicket",
    "Broadcast",
    "Budgets",
    "Channel",
    "ChannelClosed",
    "ChannelFull",
    "Chunk",
    "ClientDisconnected",
    "ConfigError",
    "Defaults",
    "Event",
    "EventStream",
    "FileResponse",
    "Guard",
    "GuardFactory",
    "GuardPolicy",
    "HTMLStream",
    "LedgerError",
    "OverBudget",
    "Policy",
    "ProducerFailed",
    "PullSource",
    "Refusal",
    "Representation",
    "Retry",
    "Section",
    "SeekableResponse",
    "SeekableSource",
    "SendGuard",
    "SluicegateError",
    "Source",
    "SourceChanged",
    "Spool",
    "StaticDirectory",
    "StreamError",
    "StreamMetrics",
    "StreamResponse",
    "StreamTimedOut",
    "UnknownTransfer",
    "ZipMember",
    "ZipStream",
    "__version__",
    "defaults",
    "retry",
]


# The tools' errors live with the tools (sluicegate.client.errors, sluicegate.doctor.errors).
# They stay importable from here, loaded on first use; they are not in __all__ because
# the client's errors need the client's dependencies (its package imports them).
_LAZY = {
    "FetchError": "sluicegate.client.errors",
    "HTTPStatusError": "sluicegate.client.errors",
    "IncompleteTransfer": "sluicegate.client.errors",
    "DigestMismatch": "sluicegate.client.errors",
    "DoctorError": "sluicegate.doctor.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
