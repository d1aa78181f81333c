"""Load for the doctor tests: ``python load_client.py PORT PATH [COUNT] [--slow S | --bench S]``.

Sends COUNT requests for PATH one after the other; with ``--slow S`` opens COUNT
connections at once that request PATH and read nothing for S seconds (slow readers);
with ``--bench S`` keeps COUNT keep-alive connections busy for S seconds and prints
requests per second (to compare ``sluicegate doctor`` with and without ``--no-probe``).
Exits non-zero when a request fails. Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time


def get(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"bad response for {path}: {data[:40]!r}")


def slow(port: int, path: str, count: int, seconds: float) -> None:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        # A small receive buffer, so the bytes pile up on the server's side.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        socks.append(s)
    time.sleep(seconds)
    for s in socks:
        s.close()


async def bench(port: int, path: str, count: int, seconds: float) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    done = 0
    end = asyncio.get_running_loop().time() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while asyncio.get_running_loop().time() < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(count)))
    print(f"{done / seconds:.0f} requests/s over {count} connections")


def main(argv: list[str]) -> None:
    port, path = int(argv[0]), argv[1]
    count = int(argv[2]) if len(argv) > 2 and not argv[2].startswith("--") else 1
    if "--bench" in argv:
        asyncio.run(bench(port, path, count, float(argv[argv.index("--bench") + 1])))
        return
    if "--slow" in argv:
        slow(port, path, count, float(argv[argv.index("--slow") + 1]))
        return
    for _ in range(count):
        get(port, path)


if __name__ == "__main__":
    main(sys.argv[1:])
