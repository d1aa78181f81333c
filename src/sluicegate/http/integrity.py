"""Digests of what was sent, per RFC 9530 (``Repr-Digest: sha-256=:…:``).

A :class:`Digester` hashes messages as the pump hands them to the server, so the
value describes exactly the bytes that left. :func:`file_digest` hashes a file once
and remembers it by path, size and modification time.

>>> d = Digester()
>>> d.update(b"Hello"); d.update(memoryview(b"World"))
>>> d.value()
'sha-256=:hy5OUM6ZkNiwQTMMR8nd0Rvsa1A66ThqmdqFhOm7EsQ=:'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from sluicegate.engine.channel import Bytes

#: The one algorithm sluicegate computes; RFC 9530 names it so.
ALGORITHM = "sha-256"


_DIGEST_SIZES: Final = {"sha-256": 32, "sha-512": 64}
# One canonical sha-256 member: 32 bytes are 43 base64 characters and one "=".
_CANONICAL_SHA256 = re.compile(r"sha-256=:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=:")
_MEMBER_RE = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):")


def format_digest(algorithm: str, raw: bytes) -> str:
    """Format one digest as an RFC 9530 dictionary member.

    >>> format_digest("sha-256", bytes(32))[:12]
    'sha-256=:AAA'
    """
    if _DIGEST_SIZES.get(algorithm) != len(raw):
        raise ValueError(f"not a {algorithm} digest: {len(raw)} bytes")
    return f"{algorithm}=:{base64.b64encode(raw).decode('ascii')}:"


def digest_of(data: Bytes, algorithm: str = "sha-256") -> str:
    """The RFC 9530 digest of ``data``.

    >>> digest_of(b"hello")
    'sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:'
    """
    if algorithm not in _DIGEST_SIZES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return format_digest(algorithm, hashlib.new(algorithm.replace("-", ""), data).digest())


def parse_digest(value: str) -> dict[str, bytes]:
    """Parse an RFC 9530 digest field value into ``{algorithm: raw digest}``.

    Only ``sha-256`` and ``sha-512`` count; members with other algorithms (deprecated or
    insecure ones such as ``md5``) are ignored, as RFC 9530 asks, but at least one must
    remain. Parameters are not accepted. Raises :class:`ValueError` with the reason.

    >>> parse_digest("sha-256=:" + "A" * 43 + "=:")["sha-256"] == bytes(32)
    True
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("empty digest")
    digests: dict[str, bytes] = {}
    for member in value.split(","):
        m = _MEMBER_RE.fullmatch(member.strip(" \t"))
        if m is None:
            raise ValueError("digest is not of the form sha-256=:<base64>:")
        algorithm, b64 = m.groups()
        if algorithm not in _DIGEST_SIZES:
            continue
        try:
            # RFC 8941 asks parsers to tolerate missing padding.
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64 in {algorithm} digest") from exc
        if len(raw) != _DIGEST_SIZES[algorithm]:
            raise ValueError(f"{algorithm} digest must be {_DIGEST_SIZES[algorithm]} bytes")
        digests[algorithm] = raw
    if not digests:
        raise ValueError("no sha-256 or sha-512 digest")
    return digests


class Digester:
    """A streaming SHA-256 of the bytes sent."""

    __slots__ = ("_hash", "bytes")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        #: bytes hashed so far
        self.bytes = 0

    def update(self, data: Bytes) -> None:
        """Hash the next message."""
        self._hash.update(data)
        self.bytes += data.nbytes if isinstance(data, memoryview) else len(data)

    def value(self) -> str:
        """The digest of everything so far, as a ``Repr-Digest`` value."""
        return format_digest(ALGORITHM, self._hash.digest())


_CACHE_SIZE = 1024
_cache: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_cache_lock = threading.Lock()


def file_digest(path: str | os.PathLike[str]) -> str:
    """``Repr-Digest`` of a file, computed once per (path, size, mtime, inode).

    Blocking: call it in a worker thread (``asyncio.to_thread``) for large files.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    h = hashlib.sha256()
    with p.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    value = format_digest(ALGORITHM, h.digest())
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value
