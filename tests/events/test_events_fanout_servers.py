"""A broadcast on every server: events handed straight to waiting pumps (see
``Channel.deliver``) arrive whole and in order, a stalled subscriber delays nobody, and
a subscriber that left is closed.

The publisher's task steps each subscriber's ``send()`` itself while that subscriber's
pump waits; a send that must wait goes to the pump's task. Both halves of that run
here against each server's real ``send``.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
import urllib.request

import pytest

from tests.servers import SERVERS, read_headers, request, serving

EVENTS = 400
SIZE = 1000


class Reader(threading.Thread):
    """Reads one event stream and keeps the numbers of the events in it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = request(port, "/events")
        self.head, self.rest = read_headers(self.sock)
        self.numbers: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        data = self.rest
        self.sock.settimeout(30)
        try:
            while not self.numbers or self.numbers[-1] < EVENTS:
                more = self.sock.recv(65536)
                if not more:
                    break
                data += more
                for line in data.split(b"\n")[:-1]:
                    if line.startswith(b"data: "):
                        self.numbers.append(int(line[6:].split(b":")[0]))
                data = data.rsplit(b"\n", 1)[1]
        except OSError:
            pass
        finally:
            self.done.set()


def _get(port: int, path: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
        doc: dict[str, int] = json.loads(reply.read())
        return doc


def _subscribers_become(port: int, n: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = _get(port, "/subscribers")["subscribers"]
        if count == n:
            return count
        time.sleep(0.05)
    return count


@pytest.mark.parametrize("server", SERVERS)
def test_a_broadcast_reaches_readers_whole_past_a_stalled_one_and_drops_one_that_left(
    server: str,
) -> None:
    with serving(server, "tests.events.fanout_app:app") as port:
        readers = [Reader(port) for _ in range(2)]
        stalled = request(port, "/events", rcvbuf=4096)  # never read
        leaver = request(port, "/events")
        assert b" 200 " in readers[0].head.split(b"\r\n")[0]
        assert _subscribers_become(port, 4) == 4
        # A reset, not a polite close: the server learns of it on its next send.
        leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaver.close()
        for reader in readers:
            reader.start()
        assert _get(port, f"/publish?count={EVENTS}&size={SIZE}")["published"] == EVENTS
        for reader in readers:
            assert reader.done.wait(60), "a reader did not get every event in time"
        for reader in readers:
            # Whole events, in order, none doubled, up to the last one: the stalled
            # subscriber cost the others nothing. (A reader may still lose a few to
            # drop_oldest when a busy machine slows the server's own writer: granian
            # hands each send to its own thread.)
            numbers = reader.numbers
            assert numbers[-1] == EVENTS
            assert all(a < b for a, b in itertools.pairwise(numbers))
            assert len(numbers) >= EVENTS * 0.9, f"{EVENTS - len(numbers)} events lost"
        # The one that left is gone from the topic; the stalled one is still there.
        assert _subscribers_become(port, 3) == 3
        stalled.close()
        for reader in readers:
            reader.sock.close()
        assert _subscribers_become(port, 0) == 0
