"""``TCP_NOTSENT_LOWAT`` lifted for clients that read (``sluicegate.cli.sendbuffer``), on
real loopback sockets under uvloop's and asyncio's transports."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from sluicegate.cli.sendbuffer import EarnedSendBuffer, bytes_acked, earned_send_buffer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux TCP_INFO")

LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
MiB = 1024 * 1024
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


async def _serve_and_read(read: bool, total: int, after: int) -> tuple[EarnedSendBuffer, int]:
    """Write ``total`` bytes a MiB at a time to a client that reads them (or not);
    return the wrapped transport and the server socket's TCP_NOTSENT_LOWAT at the end."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[EarnedSendBuffer] = loop.create_future()

    class Writer(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, LOWAT, 32 * 1024)
            wrapped = earned_send_buffer(transport, after)
            assert isinstance(wrapped, EarnedSendBuffer)
            made.set_result(wrapped)

    server = await loop.create_server(Writer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    if not read:
        # A small window, so the kernel cannot take much for the client either.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=client)
    if not read:
        writer.transport.pause_reading()
    wrapped = await made
    got = 0
    for _ in range(total // MiB):
        wrapped.write(b"x" * MiB)
        while read and got < wrapped._written - 4 * MiB:  # keep a little in flight
            got += len(await reader.read(MiB))
        await asyncio.sleep(0)
    while read and got < total:
        got += len(await reader.read(MiB))
    sock = wrapped.get_extra_info("socket")
    lowat = sock.getsockopt(socket.IPPROTO_TCP, LOWAT)
    wrapped.close()
    writer.close()
    server.close()
    return wrapped, lowat


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_reads_earns_the_limit_lifted(loop: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        wrapped, lowat = runner.run(_serve_and_read(True, 32 * MiB, 8 * MiB))
    assert wrapped.earned
    assert lowat == 0  # the system's: no limit
    # It stopped counting: writes go straight to the transport now.
    assert "write" in vars(wrapped)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_reads_nothing_keeps_the_limit(loop: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        wrapped, lowat = runner.run(_serve_and_read(False, 16 * MiB, 8 * MiB))
    assert not wrapped.earned
    assert lowat == 32 * 1024
    assert "write" not in vars(wrapped)  # still watching


def test_bytes_acked_counts_what_the_peer_took() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted:
            accepted.sendall(b"y" * 100_000)
            got = 0
            while got < 100_000:
                got += len(client.recv(65536))
            for _ in range(100):  # the ACK may trail the data by a moment
                if bytes_acked(accepted) == 100_000:
                    break
                time.sleep(0.01)
            assert bytes_acked(accepted) == 100_000


def test_nothing_is_wrapped_without_a_threshold_or_a_tcp_socket() -> None:
    class NoSocket:
        def get_extra_info(self, name: str) -> None:
            return None

    transport = NoSocket()
    assert earned_send_buffer(transport, None) is transport
    assert earned_send_buffer(transport, 1024) is transport
