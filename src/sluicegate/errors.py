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

from types import TracebackType


class SluicegateError(Exception):
    """Base class of every error sluicegate raises on purpose."""


class ConfigError(SluicegateError, ValueError):
    """A bad argument or setting: reported before anything is sent or started."""


# -- streaming -----------------------------------------------------------------


class StreamError(SluicegateError):
    """Something stopped a stream from being delivered whole."""


class ClientDisconnected(StreamError):
    """The client went away before the response was complete."""


class _SendErrors:
    """Context manager: an ``OSError`` from the server's ``send()`` is the client leaving.

    ASGI 2.4 servers raise ``OSError`` from ``send()`` once the client has gone; to
    sluicegate that is :class:`ClientDisconnected`, whoever sends. A class rather than
    ``contextlib.contextmanager``: it wraps every message sent, and this costs a tenth.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, OSError):
            raise disconnected(exc) from exc


def disconnected(exc: OSError) -> ClientDisconnected:
    """What an ``OSError`` from the server's ``send()`` means: the client left.

    For the few hot paths that cannot afford a ``with`` block per message; everyone
    else uses :data:`send_errors`.
    """
    return ClientDisconnected(f"the client went away ({type(exc).__name__})")


#: ``with send_errors: await send(...)`` maps ``OSError`` to :class:`ClientDisconnected`:
#: the one place that mapping lives.
send_errors = _SendErrors()


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
