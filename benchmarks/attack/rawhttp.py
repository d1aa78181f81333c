"""A raw HTTP/1.1 client for the attack suite: it sends bytes as given, no checks.

httpx and h11 refuse to *send* much of what an attacker sends (bad header values,
odd targets), and they hide framing; this one writes the request bytes verbatim,
reads to EOF (``Connection: close``) and parses only what the checks need.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Reply:
    """One response: status, headers (lower-case names), decoded body, whether complete."""

    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    """The request, verbatim (UTF-8), with ``Connection: close``."""
    lines = [f"{method} {target} HTTP/1.1", "Host: attack"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


async def exchange(port: int, raw: bytes, patience: float = 30.0) -> Reply:
    """Send ``raw`` to 127.0.0.1:``port``; read the whole answer (``patience`` s at most)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        data = b""
        async with asyncio.timeout(patience):
            while chunk := await reader.read(1 << 16):
                data += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return parse(data)


def parse(data: bytes) -> Reply:
    """Parse one response (Content-Length, chunked, or to EOF)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return Reply(0, {}, b"", False)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, complete = _dechunk(rest)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        body, complete = rest[:length], len(rest) >= length
    else:
        body, complete = rest, True
    return Reply(status, headers, body, complete)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return bytes(out), False
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out), True
        out += data[end + 2 : end + 2 + size]
        if end + 2 + size > len(data):
            return bytes(out), False
        pos = end + 2 + size + 2
