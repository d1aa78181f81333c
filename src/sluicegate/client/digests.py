"""Read RFC 9530 digest fields (``Repr-Digest``, ``Content-Digest``) (sans-IO).

Only ``sha-256`` is checked; other algorithms in the same field are ignored::

    >>> import hashlib
    >>> value = format_sha256(hashlib.sha256(b"hello").digest())
    >>> value
    'sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:'
    >>> parse_sha256(value + ", sha-512=:AAAA:") == hashlib.sha256(b"hello").digest()
    True
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["format_sha256", "parse_sha256"]


def format_sha256(digest: bytes) -> str:
    """Render a raw 32-byte SHA-256 as ``sha-256=:base64:``."""
    return "sha-256=:" + base64.b64encode(digest).decode("ascii") + ":"


def parse_sha256(field: str) -> bytes | None:
    """The 32-byte SHA-256 from a digest field, or ``None`` if it has none.

    A malformed ``sha-256`` member also gives ``None``: a value we cannot read
    is treated as absent, never as a match.
    """
    # Structured-field dictionary: members split on commas (base64 has none),
    # parameters after ';' are ignored.
    for member in field.split(","):
        key, eq, value = member.partition("=")
        if not eq or key.strip().lower() != "sha-256":
            continue
        value = value.split(";", 1)[0].strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            return None
        try:
            raw = base64.b64decode(value[1:-1], validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) == 32 else None
    return None
