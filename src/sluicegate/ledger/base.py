"""The ledger contract every backend fulfils, and the behaviour they share.

A streaming engine calls :meth:`Ledger.begin` before the first byte, :meth:`Ledger.progress`
as bytes go out (cheap: backends batch or throttle it) and :meth:`Ledger.finish` once the
stream has ended, however it ended. A client later reads the record or posts a receipt::

    async with SQLiteLedger("transfers.db") as ledger:
        tid = await ledger.begin("GET", "/report.pdf", size=len(body))
        await ledger.finish(tid, "completed", len(body), digest=digest_of(body))
        verdict = await ledger.receipt(tid, len(body), digest_of(body))
        assert verdict.verified

Backends raise :class:`~sluicegate.LedgerError` (and its subclasses
:class:`~sluicegate.UnknownTransfer` and :class:`InvalidTransition`) and nothing else
on purpose; a caller that must never fail because of the ledger catches ``LedgerError``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from types import TracebackType
from typing import Literal, Self

from sluicegate.errors import ConfigError, LedgerError, UnknownTransfer
from sluicegate.ledger.model import (
    ErrorInfo,
    Receipt,
    StateName,
    TransferRecord,
    TransferState,
    Verdict,
    is_transfer_id,
    judge,
    parse_digest,
    state_for_error,
)

__all__ = ["Ledger", "LiveTransfer", "Transfer"]

log = logging.getLogger("sluicegate.ledger")

_POLL_FIRST = 0.005
_POLL_MAX = 0.1
_UNKNOWN_GRACE = 0.25


class Ledger(abc.ABC):
    """Where transfers are recorded: the async contract of every backend.

    Use it as an async context manager, or call :meth:`open` and :meth:`close`. One
    instance belongs to one event loop. Several instances (in several processes) may share
    one store; each only ever writes the transfers it began, except for marking the
    transfers of a dead instance ``interrupted``.

    ``settle_timeout`` is how long :meth:`receipt` waits for a transfer that is still
    streaming (or not yet visible) to reach its final state: a client can read the last
    byte before the server has recorded that it sent it (with ``commit_before_end`` off).

    ``commit_before_end`` (on by default) makes a :class:`~sluicegate.StreamResponse`
    hold back the end of its body (the terminating message, or the last byte of a
    ``Content-Length`` body) until :meth:`finish` has committed the record, so that no
    client ever holds a whole body whose ``completed`` record a crash could still lose.
    It costs each response one commit's latency (see ``docs/guides/ledger.md``); off,
    the record follows the last byte by up to one commit.
    """

    def __init__(self, *, settle_timeout: float = 1.0, commit_before_end: bool = True) -> None:
        if not settle_timeout >= 0:
            raise ConfigError("settle_timeout must be >= 0")
        if not isinstance(commit_before_end, bool):
            raise ConfigError("commit_before_end must be True or False")
        self.settle_timeout = settle_timeout
        #: hold each response's end until its final record is committed
        self.commit_before_end = commit_before_end
        self._status: Literal["new", "open", "closed"] = "new"
        #: the transfers streaming in this instance, by id
        self._live: dict[str, LiveTransfer] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> Self:
        """Connect, create the schema if needed, recover and prune. Returns ``self``."""
        if self._status == "closed":
            raise LedgerError(f"{type(self).__name__} is closed and cannot be reopened")
        if self._status == "new":
            await self._open()
            self._status = "open"
        return self

    async def close(self) -> None:
        """Mark transfers still streaming here ``interrupted``, then release resources.

        Idempotent; later calls to the other methods raise :class:`~sluicegate.LedgerError`.
        """
        if self._status == "open":
            self._status = "closed"
            await self._close()
        self._status = "closed"

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._status != "open":
            raise LedgerError(f"{type(self).__name__} is {self._status}, not open")

    # -- the contract --------------------------------------------------------------------

    @abc.abstractmethod
    async def begin(self, method: str, path: str, *, size: int | None = None) -> str:
        """Record a new transfer in the ``streaming`` state and return its id.

        ``path`` is stored without its query string. ``size`` is the body length when
        known. Raises :class:`~sluicegate.ConfigError` on a bad argument.
        """

    @abc.abstractmethod
    async def progress(self, transfer_id: str, bytes_sent: int) -> None:
        """Note that ``bytes_sent`` bytes in total have gone out. Call it as often as you like.

        It is throttled: stores see at most one write per interval, so after a crash the
        recorded count may lag. Ids that are not streaming in this instance are ignored.
        """

    def follow(self, transfer_id: str, sent: Callable[[], int]) -> None:
        """Let the ledger read a streaming transfer's byte count itself, when it writes one.

        The alternative to calling :meth:`progress` for every chunk: ``sent()`` returns
        the bytes sent so far (never fewer than the last call returned, and never more
        than :meth:`finish` will be given), and the ledger calls it only when it writes
        progress anyway: for a transfer whose record is already in the store (it has
        streamed for ``begin_delay``), at most once per progress interval, and when a
        record of it is read here. A short transfer never has it called. Ids that are not
        streaming in this instance are ignored. :class:`~sluicegate.StreamResponse` does
        this for every transfer it records.
        """
        live = self._live.get(transfer_id)
        if live is not None:
            live.count = sent

    @abc.abstractmethod
    async def finish(
        self,
        transfer_id: str,
        state: TransferState | StateName,
        bytes_sent: int,
        *,
        digest: str | None = None,
        error: BaseException | ErrorInfo | None = None,
    ) -> None:
        """Record how the transfer ended. Returns once that is durable.

        ``state`` is any state but ``streaming``; ``digest`` an RFC 9530 value such as
        ``sha-256=:...:``; ``error`` is stored as its class name and a short message with
        likely secrets removed. Raises :class:`InvalidTransition` if the transfer already
        ended (for instance it was marked ``interrupted``) and
        :class:`~sluicegate.UnknownTransfer` if there is no such transfer.
        """

    @abc.abstractmethod
    async def get(self, transfer_id: str) -> TransferRecord:
        """The record of a transfer. Raises :class:`~sluicegate.UnknownTransfer`."""

    @abc.abstractmethod
    async def _attach_receipt(
        self, transfer_id: str, expected: TransferState, receipt: Receipt
    ) -> bool:
        """Attach ``receipt`` if the record is still in ``expected``; False if it is not."""

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    async def flush(self) -> None:
        """Wait until everything recorded so far, progress included, is in the store."""
        self._check_open()

    # -- shared behaviour ----------------------------------------------------------------

    async def receipt(self, transfer_id: str, bytes_received: int, digest: str) -> Verdict:
        """Compare the client's ``bytes_received`` and ``digest`` with the record.

        The verdict is ``verified`` only if the transfer completed and both match. The
        receipt is attached to the record (a later receipt replaces it) once the transfer
        is final; while it still streams after ``settle_timeout`` the verdict says
        ``in_progress`` and nothing is stored. Raises :class:`~sluicegate.UnknownTransfer`
        and, for a malformed argument, :class:`~sluicegate.ConfigError`.
        """
        self._check_open()
        if isinstance(bytes_received, bool) or not isinstance(bytes_received, int):
            raise ConfigError("bytes_received must be an integer")
        try:
            parse_digest(digest)
        except ValueError as exc:
            raise ConfigError(f"bad digest: {exc}") from None
        if not is_transfer_id(transfer_id):
            raise UnknownTransfer(transfer_id)
        started = time.monotonic()
        deadline = started + self.settle_timeout
        pause = _POLL_FIRST
        while True:
            try:
                record = await self.get(transfer_id)
            except UnknownTransfer:
                # Another worker may not have committed a transfer that is only
                # milliseconds old; a short grace covers that without letting unknown
                # ids hold requests open for the whole settle_timeout.
                if time.monotonic() >= min(deadline, started + _UNKNOWN_GRACE):
                    raise
                record = None
            if record is not None:
                try:
                    verdict, receipt = judge(record, bytes_received, digest, at=time.time())
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
                if receipt is None and time.monotonic() >= deadline:
                    return verdict
                if receipt is not None and await self._attach_receipt(
                    transfer_id, record.state, receipt
                ):
                    return verdict
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    @contextlib.asynccontextmanager
    async def track(
        self, method: str, path: str, *, size: int | None = None
    ) -> AsyncIterator[Transfer]:
        """Begin a transfer, and finish it however the block ends.

        Report bytes with :meth:`Transfer.sent` and set :attr:`Transfer.digest` before
        the block ends; a clean exit records ``completed``, an exception the state
        :func:`state_for_error` picks (``client_gone``, ``timed_out``, ``failed``,
        ``interrupted``) and re-raises it. A ledger failure while recording an
        exception's outcome is logged, never raised over the original exception::

            async with ledger.track("GET", "/report.pdf", size=len(body)) as transfer:
                headers[TRANSFER_ID_HEADER] = transfer.id
                for chunk in chunks:
                    await send(chunk)
                    await transfer.sent(len(chunk))
                transfer.digest = digest_of(body)
        """
        transfer = Transfer(self, await self.begin(method, path, size=size))
        try:
            yield transfer
        except BaseException as exc:
            try:
                await self.finish(
                    transfer.id,
                    state_for_error(exc),
                    transfer.bytes_sent,
                    digest=transfer.digest,
                    error=exc,
                )
            except LedgerError as ledger_exc:
                log.warning("could not record how transfer %s ended: %s", transfer.id, ledger_exc)
            raise
        await self.finish(transfer.id, "completed", transfer.bytes_sent, digest=transfer.digest)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._status}>"


class LiveTransfer:
    """A transfer streaming in this instance, as a backend keeps it in memory.

    Only the event loop's thread touches it. ``bytes_sent`` is the most the ledger has
    been told (by :meth:`Ledger.progress`) or has read (from the :meth:`Ledger.follow`
    counter); :meth:`sent` reads the counter first.
    """

    __slots__ = ("began", "bytes_sent", "count", "flushed_at", "persisted", "record", "stored")

    def __init__(self, record: TransferRecord, began: float) -> None:
        #: the record as begun: 0 bytes, streaming
        self.record = record
        #: ``time.monotonic()`` at the begin
        self.began = began
        self.bytes_sent = 0
        #: the counter :meth:`Ledger.follow` gave, if any
        self.count: Callable[[], int] | None = None
        #: when progress was last handed to the store (monotonic), and how many bytes
        #: it said: a reading the ledger took meanwhile (a ``get``) is not in the store
        self.flushed_at = began
        self.stored = 0
        #: its begin has been handed to the store
        self.persisted = False

    def sent(self) -> int:
        """The bytes sent so far: the counter's reading if it is ahead of ``bytes_sent``."""
        count = self.count
        if count is not None:
            try:
                n = count()
            except Exception:
                # Bookkeeping must not break on a bad counter: stop reading this one.
                log.exception("transfer %s: its byte counter failed", self.record.id)
                self.count = None
                return self.bytes_sent
            if type(n) is int and n > self.bytes_sent:
                self.bytes_sent = n
        return self.bytes_sent

    def snapshot(self) -> TransferRecord:
        """The record as it stands, with the latest byte count."""
        return replace(self.record, bytes_sent=self.sent())


class Transfer:
    """One transfer inside :meth:`Ledger.track`: its id, and what has been sent so far."""

    __slots__ = ("_ledger", "bytes_sent", "digest", "id")

    def __init__(self, ledger: Ledger, transfer_id: str) -> None:
        self._ledger = ledger
        #: the transfer id, for the response header and the status URL
        self.id = transfer_id
        #: bytes sent so far; :meth:`sent` adds to it
        self.bytes_sent = 0
        #: RFC 9530 digest of the whole body, recorded when the block ends
        self.digest: str | None = None

    async def sent(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes as sent (cheap; see :meth:`Ledger.progress`)."""
        self.bytes_sent += nbytes
        await self._ledger.progress(self.id, self.bytes_sent)

    def __repr__(self) -> str:
        return f"<Transfer {self.id} {self.bytes_sent} bytes>"
