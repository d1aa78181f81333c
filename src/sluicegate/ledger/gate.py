"""Hold the end of a response until its ledger record is committed.

A client that holds a whole body must be able to read ``completed`` in the ledger, even
if the server is killed the next instant. Recording the end *after* the last ``send()``
leaves a window (the group commit: milliseconds) in which the client already has every
byte and the record exists only in the server's memory. :class:`EndGate` closes it: it
sits between the response and the server's ASGI ``send`` and holds back the last byte of
the message that would complete the body until ``seal`` (which records the final state
and returns once that is committed) has run.

The message that completes a body is the first of:

* the one that carries the last byte of a ``Content-Length`` body (the client has the
  whole body as soon as it has those bytes, whatever follows);
* ``http.response.body`` with ``more_body=False``, unless trailers were announced;
* ``http.response.trailers`` with ``more_trailers=False`` (the chunked terminator goes out
  with it).

Only its last byte waits: the rest of that message leaves before ``seal`` runs (as a
message of its own, with ``more_body``), so the client reads and parses the head and
nearly all of the body while the record is being committed, instead of idling until
the commit is done and then starting. A client still cannot hold the whole body before
the commit; it costs one more message, hence one more write to the socket. (Measured
on uvicorn with the 1 KiB response of ``benchmarks/bench_ledger.py``, three campaigns of
five runs interleaved with the code before: the ledger's added client wall time, median,
fell from +30…+33 % to +21 % with SQLite and from +52…+53 % to +23…+25 % with Redis,
whose finish is a round trip the loop waits for; the server's CPU per response grew by
about 12 µs.) The split stays when the seal takes no time at all (SQLite's journal, a
ledger that records nothing): with ``bench_ledger.py``'s ledger that records nothing,
three interleaved runs of 6,000 requests (2026-11-30 01:31 UTC) added +6.6, +6.8 and
+7.2 % client wall time with the split against +7.8, +7.3 and +7.8 % with the message
left whole, for 5–8 µs more server CPU.

The other window cannot be closed by any ordering: if the server dies after the commit
and before the held message leaves, the record says ``completed`` and the client holds
an incomplete body. That is the safe direction: the client knows its body is incomplete
(the connection broke before its end), and its receipt gets ``size_mismatch``.

The head of a ``Content-Length`` response is held until the first body message passes,
so that a small body leaves in one piece with its head rather than after it. (A body of
unknown length sends its head at once: a stream may flush its head before it has
anything to say, as event streams do.)

The gate looks only at the ASGI messages, so it needs nothing from the pump; it is a
wrapper rather than a hook in the pump because every path that can end a body (the
pump's loop, an in-band error record, a trailer) goes through ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["EndGate"]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
#: Records the transfer's end, given the body bytes sent including the held message.
Seal = Callable[[int], Awaitable[None]]


class EndGate:
    """An ASGI ``send`` that awaits ``seal(bytes)`` before the last byte of the body.

    ``seal`` runs at most once. Messages pass through in order, unchanged except the one
    that ends the body, which leaves as two: all but its last byte before ``seal``, the
    last byte (and the end) after it.

    >>> import asyncio
    >>> log = []
    >>> async def send(message):
    ...     log.append(bytes(message.get("body", b"head")))
    >>> async def seal(nbytes):
    ...     log.append(f"sealed {nbytes}")
    >>> gate = EndGate(send, seal)
    >>> async def respond():
    ...     await gate({"type": "http.response.start", "status": 200,
    ...                 "headers": [(b"content-length", b"5")]})
    ...     await gate({"type": "http.response.body", "body": b"hello", "more_body": True})
    ...     await gate({"type": "http.response.body", "body": b"", "more_body": False})
    >>> asyncio.run(respond())
    >>> log
    [b'head', b'hell', 'sealed 5', b'o', b'']
    """

    __slots__ = ("_head", "_length", "_seal", "_send", "_trailers", "sealed", "sent")

    def __init__(self, send: Send, seal: Seal) -> None:
        self._send = send
        self._seal = seal
        self._length: int | None = None
        self._trailers = False
        self._head: Message | None = None
        #: body bytes that have passed (or are passing) through
        self.sent = 0
        #: ``seal`` has been called
        self.sealed = False

    async def __call__(self, message: Message) -> None:
        """Pass ``message`` on; first run ``seal`` if it completes the body."""
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body", b"")
            n = body.nbytes if type(body) is memoryview else len(body)
            self.sent += n
            if not self.sealed and (
                (not message.get("more_body", False) and not self._trailers)
                or (self._length is not None and self.sent >= self._length)
            ):
                if n > 1:
                    # All but the last byte leave now: the client reads them while
                    # the record is committed, and still cannot hold the whole body.
                    view = body if type(body) is memoryview else memoryview(body)
                    await self._pass({**message, "body": view[:-1], "more_body": True})
                    message = {**message, "body": view[-1:]}
                await self._run_seal()
        elif kind == "http.response.trailers":
            if not self.sealed and not message.get("more_trailers", False):
                await self._run_seal()
        elif kind == "http.response.start":
            self._trailers = bool(message.get("trailers", False))
            self._length = _content_length(message.get("headers", ()))
            if self._length is not None:
                self._head = message  # leaves with the first body message
                return
        await self._pass(message)

    async def _pass(self, message: Message) -> None:
        head, self._head = self._head, None
        if head is not None:
            await self._send(head)
        await self._send(message)

    async def _run_seal(self) -> None:
        self.sealed = True
        await self._seal(self.sent)


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
