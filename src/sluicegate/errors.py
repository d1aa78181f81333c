"""The exceptions sluicegate raises, as one small hierarchy.

Catch :class:`SluicegateError` for everything, or a branch for what you care about::

    try:
        record = await ledger.get(transfer_id)
    except UnknownTransfer:
        ...  # no such transfer on record: answer 404

The tools' own errors live with the tools (and derive from :class:`SluicegateError`):
``FetchError``, ``HTTPStatusError``, ``IncompleteTransfer`` and ``DigestMismatch`` in
:mod:`sluicegate.client.errors`; ``DoctorError`` in :mod:`sluicegate.doctor.errors`.
"""

from __future__ import annotations


class SluicegateError(Exception):
    """Base class of every error sluicegate raises on purpose."""


class ConfigError(SluicegateError, ValueError):
    """A bad argument or setting: reported before anything is sent or started."""


# -- streaming -----------------------------------------------------------------


class StreamError(SluicegateError):
    """Something stopped a stream from being delivered whole."""


class ClientDisconnected(StreamError):
    """The client went away before the response was complete."""


class ProducerFailed(StreamError):
    """The producer raised after the response headers were sent.

    The original exception is the ``__cause__``.
    """


class ChannelFull(StreamError):
    """A channel with the ``error`` policy was asked to hold more than its limit."""


class ChannelClosed(StreamError):
    """A producer wrote to a channel that was already closed."""


class StreamTimedOut(StreamError):
    """A slow or stalled reader broke the stream's stall timeout or minimum rate."""


class SourceChanged(StreamError):
    """A file or archive member changed (or ended early) while it was being served.

    A body that disagrees with its ``Content-Length`` or ``ETag`` is worse than none:
    the response is aborted instead.
    """


class OverBudget(StreamError):
    """A new stream was refused because a stream or memory budget is spent."""


# -- ledger ----------------------------------------------------------------------


class LedgerError(SluicegateError):
    """The transfer ledger could not record or read a transfer."""


class UnknownTransfer(LedgerError, LookupError):
    """No transfer with that id is on record."""
