"""Fast clients earn the kernel's whole send buffer: ``TCP_NOTSENT_LOWAT`` lifted per connection.

``sluicegate serve`` sets ``TCP_NOTSENT_LOWAT`` (32K by default) on every connection, so
that a client that stops reading pins about 74 KiB of kernel memory rather than the
autotuned send buffer (4 MiB on loopback). The same limit costs a fast client its
speed: the kernel then takes at most 32K of unsent bytes per ``send()``, so uvicorn
writes and waits for the socket many more times per gigabyte. Measured with the server
on one CPU and the client on the other (``benchmarks/bench_slowread.py``), one download
went at 42 % of the autotuned speed.

So the limit stays where it is needed: at the start of every connection, and on every
client that has not shown that it reads. :class:`EarnedSendBuffer` wraps a connection's
transport, counts the bytes written and, every ``check_every`` of them, asks the kernel
how many the client has acknowledged (``TCP_INFO``'s ``tcpi_bytes_acked``, one
``getsockopt``). Once that passes ``after``, it gives the connection the system's
``TCP_NOTSENT_LOWAT`` back (no limit, unless the machine sets one) and stops counting.
A client that reads ``after`` bytes and then stalls pins at most the autotuned buffer,
until the guard's stall timeout cuts it.

Written here rather than taken from a library: it is a few lines of socket options on
uvicorn's transport, which no server exposes as a setting. Linux only (the layout of
``struct tcp_info``); elsewhere :func:`earned_send_buffer` returns the transport as it is.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from typing import Any, Final

__all__ = ["DEFAULT_EARNED_AFTER", "EarnedSendBuffer", "earned_send_buffer", "lift_lowat"]

#: Bytes a client must have acknowledged before its connection loses the limit, unless
#: told otherwise: a few milliseconds of a fast download, far more than a slow reader
#: takes before the guard judges it.
DEFAULT_EARNED_AFTER: Final = 8 * 1024 * 1024
#: How often (in bytes written) the kernel is asked.
CHECK_EVERY: Final = 1024 * 1024

# Linux's TCP_NOTSENT_LOWAT (Python names it from 3.12 on), and where tcpi_bytes_acked
# (a u64, Linux 4.1+) sits in struct tcp_info.
_TCP_NOTSENT_LOWAT: Final = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
_BYTES_ACKED: Final = struct.Struct("=Q")
_BYTES_ACKED_AT: Final = 120
_TCP_INFO_SIZE: Final = 256


def bytes_acked(sock: socket.socket) -> int | None:
    """Bytes of this connection the client has acknowledged; None if unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, ValueError):
        return None
    if len(info) < _BYTES_ACKED_AT + _BYTES_ACKED.size:
        return None  # a kernel older than 4.1
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0])


def lift_lowat(sock: socket.socket) -> bool:
    """Give ``sock`` the system's ``TCP_NOTSENT_LOWAT`` back; False if it could not."""
    try:
        # 0 means "the net.ipv4.tcp_notsent_lowat sysctl", which is unlimited by default.
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, 0)
    except (OSError, ValueError):
        return False
    return True


class EarnedSendBuffer:
    """A transport whose connection loses ``TCP_NOTSENT_LOWAT`` once its client has
    acknowledged ``after`` bytes (see the module docstring). Everything else passes
    through to the wrapped transport.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        sock: socket.socket,
        after: int,
        check_every: int = CHECK_EVERY,
    ) -> None:
        self._transport = transport
        self._sock = sock
        self._after = after
        self._check_every = check_every
        self._next_check = check_every
        self._written = 0
        #: the limit was lifted
        self.earned = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: Any) -> None:
        """Write, and every ``check_every`` bytes look whether the client earned it."""
        self._transport.write(data)
        self._written += len(data)
        if self._written >= self._next_check:
            self._next_check = self._written + self._check_every
            acked = bytes_acked(self._sock)
            if acked is None:
                self._stop()
            elif acked >= self._after:
                self.earned = lift_lowat(self._sock)
                self._stop()

    def _stop(self) -> None:
        # No more counting: later writes go straight to the transport's own method.
        self.write = self._transport.write  # type: ignore[method-assign]

    def writelines(self, chunks: Any) -> None:
        """Write each of ``chunks`` (so that they are counted)."""
        for chunk in chunks:
            self.write(chunk)


def earned_send_buffer(transport: Any, after: int | None) -> Any:
    """``transport`` wrapped in :class:`EarnedSendBuffer`, or as it is when ``after`` is
    None, the platform is not Linux, or the transport has no TCP socket."""
    if after is None or not sys.platform.startswith("linux"):
        return transport
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "type", None) != socket.SOCK_STREAM:
        return transport
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return transport
    return EarnedSendBuffer(transport, sock, after)
