"""sluicegate: stream HTTP responses fast and with bounded memory.

The public API is what this module exports::

    from sluicegate import StreamResponse

    async def numbers():
        for i in range(1_000_000):
            yield f"{i}\\n"

    app = StreamResponse(numbers(), media_type="text/plain")  # an ASGI app
"""

from sluicegate.channel import FLUSH, Channel, Chunk, Policy
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
    StreamError,
    StreamTimedOut,
    UnknownTransfer,
)
from sluicegate.metrics import StreamMetrics
from sluicegate.pump import SendGuard
from sluicegate.response import (
    Admission,
    Defaults,
    GuardPolicy,
    Refusal,
    StreamResponse,
    Ticket,
    defaults,
)
from sluicegate.sources import PullSource, Source

__version__ = "0.1.0"

__all__ = [
    "FLUSH",
    "Admission",
    "Channel",
    "ChannelClosed",
    "ChannelFull",
    "Chunk",
    "ClientDisconnected",
    "ConfigError",
    "Defaults",
    "DigestMismatch",
    "DoctorError",
    "FetchError",
    "GuardPolicy",
    "HTTPStatusError",
    "IncompleteTransfer",
    "LedgerError",
    "OverBudget",
    "Policy",
    "ProducerFailed",
    "PullSource",
    "Refusal",
    "SendGuard",
    "SluicegateError",
    "Source",
    "StreamError",
    "StreamMetrics",
    "StreamResponse",
    "StreamTimedOut",
    "Ticket",
    "UnknownTransfer",
    "__version__",
    "defaults",
]
