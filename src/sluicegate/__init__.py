"""sluicegate: stream HTTP responses fast and with bounded memory.

The public API is what this module exports::

    from sluicegate import StreamResponse

    async def numbers():
        for i in range(1_000_000):
            yield f"{i}\\n"

    app = StreamResponse(numbers(), media_type="text/plain")  # an ASGI app
"""

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
    DigestMismatch,
    DoctorError,
    FetchError,
    HTTPStatusError,
    IncompleteTransfer,
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
    "DigestMismatch",
    "DoctorError",
    "Event",
    "EventStream",
    "FetchError",
    "FileResponse",
    "Guard",
    "GuardFactory",
    "GuardPolicy",
    "HTMLStream",
    "HTTPStatusError",
    "IncompleteTransfer",
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
