"""Every contract between the engine and what plugs into it, in one place.

A hook implements a protocol from here and imports nothing of its caller: the
budgets (:mod:`sluicegate.protect.budgets`) know :class:`Refusal`, not the response
that asks them; the guard knows :class:`SendGuard`, not the pump.

========================  ===========================================  =====================
protocol                  who calls it                                 an implementation
========================  ===========================================  =====================
:class:`Source`           the pump, to fill a stream's channel          ``engine.sources``
:class:`SendGuard`        the pump, after every message and wait        ``protect.guard``
:class:`GuardFactory`     the response, once per stream                 ``GuardPolicy``
:class:`Admission`        the response, before anything is produced     ``protect.budgets``
:class:`AdmissionTicket`  the response, when the stream ends            ``budgets.Ticket``
========================  ===========================================  =====================

:class:`TransferState` is the one vocabulary for how a transfer stands or ended,
shared by the engine's metrics and the transfer ledger.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sluicegate.engine.channel import Channel

__all__ = [
    "Admission",
    "AdmissionTicket",
    "GuardFactory",
    "HeldBytes",
    "Refusal",
    "Send",
    "SendGuard",
    "Source",
    "StartResponse",
    "TransferState",
    "WatchingTicket",
]

#: The server's ASGI ``send``: it returns an awaitable, not necessarily a coroutine.
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: Sends the response head, given the body's size when known.
StartResponse = Callable[[int | None], Awaitable[None]]


class TransferState(enum.StrEnum):
    """How a transfer stands: streaming, or how it ended.

    The values are what the ledger stores and what metrics count; a member compares
    equal to its value (``TransferState.COMPLETED == "completed"``).
    """

    STREAMING = "streaming"
    #: the whole body went out, and its end
    COMPLETED = "completed"
    #: the producer (or the server) failed; the client saw an incomplete body
    FAILED = "failed"
    #: the client left before the end
    CLIENT_GONE = "client_gone"
    #: the guard cut a reader too slow or stalled
    TIMED_OUT = "timed_out"
    #: the server stopped (a crash, a shutdown) with the transfer under way
    INTERRUPTED = "interrupted"


class Source(Protocol):
    """What the pump drives. Implement it for a producer shape sluicegate lacks."""

    #: Length of the whole body when known before it is produced, else None.
    size: int | None

    async def run(self, channel: Channel) -> None:
        """Produce everything into ``channel``; await ``channel.wait_room()`` before each chunk."""

    async def aclose(self) -> None:
        """Release the producer; called once, after ``run`` ended or was cancelled."""


class SendGuard(Protocol):
    """Decides when a slow reader has held a stream too long (see :mod:`sluicegate.protect.guard`).

    The pump tells it about every message the server accepted and asks it for a
    deadline whenever a ``send()`` has to wait for the client.
    """

    def accepted(self, now: float, nbytes: int, waited: float) -> None:
        """``nbytes`` were accepted at ``now`` after waiting ``waited`` s for the client."""

    def deadline(self, now: float) -> float | None:
        """The monotonic time by which a waiting ``send()`` must finish, or None."""

    def verdict(self, now: float) -> str | None:
        """Why the stream must be cut now (a short sentence), or None to go on."""


class GuardFactory(Protocol):
    """Makes a fresh :class:`SendGuard` for each stream."""

    def new(self, now: float) -> SendGuard:
        """The guard of one stream that starts at ``now`` (``time.monotonic()``)."""


class AdmissionTicket(Protocol):
    """An admitted stream's place in the budgets; released when the stream ends."""

    def release(self) -> None:
        """Give the place back."""


class HeldBytes(Protocol):
    """What one stream holds now and at most so far (a stream's metrics)."""

    bytes_buffered: int
    peak_buffered: int


@runtime_checkable
class WatchingTicket(AdmissionTicket, Protocol):
    """A ticket that also wants to see what its stream really holds while it runs.

    The response calls :meth:`watch` once, right after admission and before anything is
    produced, so the budgets can count ``max(reservation, held)`` for the stream.
    """

    def watch(self, held: HeldBytes) -> None:
        """Read ``held`` (live, written by the engine) until :meth:`release`."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a stream was not admitted, and when to try again."""

    reason: str
    retry_after: float


class Admission(Protocol):
    """Admits a new stream or refuses it before anything is produced (a 503)."""

    def admit(self, scope: Any) -> AdmissionTicket | Refusal:
        """A ticket to stream, or a refusal."""
