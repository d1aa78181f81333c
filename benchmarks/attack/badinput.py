"""Bad input over HTTP: numbers, Range/If-Range, path traversal, ledger ids and receipts.

Every answer must be a precise 4xx (problem+json where sluicegate writes the body) or
correct bytes: never a 5xx, never a wrong byte, never a byte from outside the static
root. Each function returns the cases it ran and a line per failure.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.attack.app import STATIC_FILES
from benchmarks.attack.rawhttp import Reply, exchange, request_bytes

NINES = "9" * 309
BAD_NUMBERS = [NINES, "9" * 40, "-1", "nan", "inf", "1e9", "0x10", "2000000G", "", "1..5M"]
BAD_NUMBERS += ["\u0661\u0662", "1" * 70, "5 M B", "-0", "100G"]


@dataclass
class Outcome:
    """How many cases one check ran, and what went wrong."""

    cases: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(what)
        else:
            self.failures[-1] = f"... and more (last: {what})"


async def run_all(
    port: int, items: list[tuple[str, str, bytes, Callable[[Reply], str | None]]], out: Outcome
) -> None:
    """Send each ``(method, target, raw, check)``; ``check`` returns a failure or None."""
    sem = asyncio.Semaphore(32)

    async def one(raw: bytes, check: Callable[[Reply], str | None], label: str) -> None:
        async with sem:
            try:
                reply = await exchange(port, raw)
            except Exception as exc:  # a hang or a refused connection is a failure too
                out.fail(f"{label}: {type(exc).__name__}: {exc}")
                return
        out.cases += 1
        problem = check(reply)
        if problem:
            out.fail(f"{label}: {problem}")

    await asyncio.gather(*(one(raw, check, f"{m} {t[:80]}") for m, t, raw, check in items))


def _is_problem_4xx(reply: Reply) -> str | None:
    if not 400 <= reply.status < 500:
        return f"status {reply.status}"
    if reply.header("content-type") != "application/problem+json":
        return f"content-type {reply.header('content-type')!r}"
    try:
        json.loads(reply.body)
    except ValueError:
        return "problem body is not JSON"
    return None


def _refused(reply: Reply) -> str | None:
    """A 4xx problem+json, a redirect (Starlette's trailing slash), or the HTTP parser's
    own 400 for a request line it cannot read (uvicorn's plain-text body)."""
    if 300 <= reply.status < 400 or (
        reply.status == 400 and reply.body.startswith(b"Invalid HTTP request")
    ):
        return None
    return _is_problem_4xx(reply)


async def numbers(port: int) -> Outcome:
    """``size`` and ``chunk`` of /download: every bad number a 400 problem+json."""
    from urllib.parse import quote

    out = Outcome()
    items = []
    for name in ("size", "chunk"):
        for value in BAD_NUMBERS:
            target = f"/download?{name}={quote(value)}"
            items.append(("GET", target, request_bytes("GET", target), _is_problem_4xx))
    for target in ("/download?chunk=512M", "/download?size=512M&chunk=512M", "/download?size=17G"):
        items.append(("GET", target, request_bytes("GET", target), _is_problem_4xx))
    await run_all(port, items, out)
    return out


def generated(size: int, chunk: int) -> bytes:
    """What the example ``/download`` sends for ``size`` and ``chunk``."""
    return b"".join(
        bytes([65 + i % 26]) * min(chunk, size - off) for i, off in enumerate(range(0, size, chunk))
    )


RANGES = [
    "bytes=0-0", "bytes=0-99", "bytes=-1", "bytes=-100", "bytes=100-", "bytes=0-",
    "bytes=5-4", "bytes=-0", "bytes=abc", "bytes=0-10,5-15", "bytes=0-1,3-4,6-7",
    "bytes=1-2,-2", "bytes= 0 - 10", "items=0-1", "bytes=99999999999-", "bytes=0-" + NINES,
    "bytes=" + NINES + "-", "bytes=--1", "bytes=", "bytes=0-1," * 40 + "0-1",
    "bytes=\u0660-1", "bytes=0-1;x", "BYTES=0-4", "bytes=4096000-", "bytes=-4096000",
    "bytes=10-20,30-40,50-60,70-80", "bytes=0-0,0-0,0-0", "bytes=1-1,0-0", "bytes=,0-3",
]  # fmt: skip


def _check_range(data: bytes, head: bool = False) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        if reply.status >= 500 or reply.status == 0:
            return f"status {reply.status}"
        if not reply.complete:
            return "incomplete body"
        if reply.status == 200 and reply.body != data:
            return f"200 with {len(reply.body)} wrong bytes"
        if reply.status == 206:
            ctype = reply.header("content-type")
            if ctype.startswith("multipart/byteranges"):
                return _check_multipart(reply, data)
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", reply.header("content-range"))
            if m is None:
                return f"206 content-range {reply.header('content-range')!r}"
            a, b, total = map(int, m.groups())
            if total != len(data) or reply.body != data[a : b + 1]:
                return f"206 {a}-{b}/{total}: wrong bytes"
        if reply.status == 416 and reply.header("content-range") != f"bytes */{len(data)}":
            return f"416 content-range {reply.header('content-range')!r}"
        return None

    return check


def _check_multipart(reply: Reply, data: bytes) -> str | None:
    m = re.search(r"boundary=([^;]+)", reply.header("content-type"))
    if m is None:
        return "multipart without boundary"
    boundary = b"--" + m.group(1).strip('"').encode()
    parts = reply.body.split(boundary)[1:-1]
    if not parts:
        return "multipart with no parts"
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        cr = re.search(rb"content-range: bytes (\d+)-(\d+)/(\d+)", head, re.I)
        if cr is None:
            return "part without content-range"
        a, b, total = map(int, cr.groups())
        if total != len(data) or body[:-2] != data[a : b + 1]:
            return f"part {a}-{b}: wrong bytes"
    return None


async def ranges(port: int, spool_id: str) -> Outcome:
    """Range x If-Range over a static file, a spooled transfer and a stream."""
    out = Outcome()
    targets = {
        "/static/a.txt": STATIC_FILES["a.txt"],
        "/static/sub/b.bin": STATIC_FILES["sub/b.bin"],
        f"/spool/{spool_id}": generated(3 << 20, 64 << 10),
        "/download?size=100000&chunk=10000": generated(100_000, 10_000),
    }
    items = []
    for target, data in targets.items():
        first = await exchange(port, request_bytes("GET", target))
        validators = [None, first.header("etag"), '"not-it"', first.header("last-modified")]
        validators += ["Thu, 01 Jan 1970 00:00:00 GMT", "garbage"]
        for value in RANGES:
            for if_range in validators[: 6 if target.startswith("/static/a") else 3]:
                headers = [("Range", value)]
                if if_range:
                    headers.append(("If-Range", if_range))
                items.append(
                    ("GET", target, request_bytes("GET", target, headers), _check_range(data))
                )
    await run_all(port, items, out)
    return out


TRAVERSALS = [
    "/static/../secret.txt", "/static/..%2fsecret.txt", "/static/%2e%2e/secret.txt",
    "/static/%2e%2e%2fsecret.txt", "/static/..%5csecret.txt", "/static/....//secret.txt",
    "/static/sub/../../secret.txt", "/static/%252e%252e/secret.txt", "/static//etc/passwd",
    "/static/%00/secret.txt", "/static/a.txt%00.png", "/static/..;/secret.txt",
    "/static/.%2e/secret.txt", "/static/%2e./secret.txt", "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/\\..\\secret.txt", "/static/%c0%ae%c0%ae/secret.txt", "/static/..%c0%afsecret.txt",
    "/static/%uff0e%uff0e/secret.txt", "/static/..\u2215secret.txt", "/static/./../secret.txt",
    "/static/sub/./../../secret.txt", "/static/../../../../etc/passwd",
    "/static/%2f..%2fsecret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt", "/static/.../secret.txt", "/static/..%252fsecret.txt",
    "/static/%2E%2E/secret.txt", "/static/sub/..%2F..%2Fsecret.txt", "/static/~/secret.txt",
    "/static/.", "/static/..", "/static/sub", "/static/sub/", "/static/.hidden",
    "/static/%2e", "/static/a.txt/..", "/static/a.txt/../../secret.txt", "//static/../secret.txt",
    "/static/sub/b.bin/../../secret.txt",
]  # fmt: skip


def _no_leak(reply: Reply) -> str | None:
    if reply.status >= 500:
        return f"status {reply.status}"
    if b"TOP-SECRET" in reply.body or b"root:" in reply.body:
        return "leaked a file outside the root"
    return None


async def traversal(port: int) -> Outcome:
    """40 ways out of the static root: none gets out, none is a 500."""
    out = Outcome()
    items = [("GET", t, request_bytes("GET", t), _no_leak) for t in TRAVERSALS]
    await run_all(port, items, out)
    return out


async def ledger(port: int, real_id: str) -> Outcome:
    """Bad transfer ids and receipt bodies: 4xx problem+json, never a 5xx."""
    out = Outcome()
    ids = ["x", "A" * 21, "A" * 23, "A" * 22 + "=", "../" * 8, "%00" * 5, NINES, "A" * 5000]
    ids += ["AAAAAAAAAAAAAAAAAAAAA%2F", "<script>", "A" * 22 + "/..", "\u00e9" * 22]
    items: list[tuple[str, str, bytes, Callable[[Reply], str | None]]] = []
    for tid in ids:
        target = f"/transfers/{tid}"
        items.append(("GET", target, request_bytes("GET", target), _refused))
        items.append(
            (
                "POST",
                target + "/receipt",
                request_bytes(
                    "POST", target + "/receipt", [("Content-Type", "application/json")], b"{}"
                ),
                _refused,
            )
        )
    bodies = [
        b"", b"{", b"[]", b"null", b"1", b'"x"', b"{}", b'{"bytes_received": 1}',
        b'{"digest": "sha-256=:AAAA:"}', b'{"bytes_received": -1, "digest": "sha-256=:AAAA:"}',
        b'{"bytes_received": ' + NINES.encode() + b', "digest": "x"}',
        b'{"bytes_received": 1e400, "digest": "x"}', b'{"bytes_received": NaN, "digest": "x"}',
        b'{"bytes_received": true, "digest": "sha-256=:AAAA:"}',
        b'{"bytes_received": 1, "digest": 5}', b'{"bytes_received": 1, "digest": "md5=:AAAA:"}',
        b'{"bytes_received": 1, "digest": "sha-256=:not base64:"}',
        b'{"bytes_received": 1, "digest": "' + b"A" * 600 + b'"}',
        b'{"bytes_received": 1, "digest": "sha-256=:AAAA:", "extra": 1}',
        b"[" * 100_000, b'{"a":' * 3000, b"\xff\xfe\x00",
        b'{"bytes_received": 1, "digest": "\\ud800"}',
        b"x" * 5000,
    ]  # fmt: skip
    target = f"/transfers/{real_id}/receipt"
    for body in bodies:
        for ctype in ("application/json", "text/plain"):
            raw = request_bytes("POST", target, [("Content-Type", ctype)], body)
            items.append(("POST", target, raw, _refused))
    for method in ("PUT", "DELETE", "PATCH"):
        items.append((method, target, request_bytes(method, target), _refused))
    await run_all(port, items, out)
    return out


Check = Callable[[int], Awaitable[Outcome]]
