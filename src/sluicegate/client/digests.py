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

from sluicegate.http.integrity import format_digest, parse_digest

__all__ = ["format_sha256", "parse_sha256"]


def format_sha256(digest: bytes) -> str:
    """Render a raw 32-byte SHA-256 as ``sha-256=:base64:``."""
    return format_digest("sha-256", digest)


def parse_sha256(field: str) -> bytes | None:
    """The 32-byte SHA-256 from a digest field, or ``None`` if it has none.

    A malformed field also gives ``None``: a value we cannot read is treated as
    absent, never as a match. Parameters after ``;`` are ignored.
    """
    # Only sha-256 is checked: other members, well-formed or not, are not ours to judge.
    members = [m.split(";", 1)[0].strip() for m in field.split(",")]
    ours = [m for m in members if m.lower().startswith("sha-256=")]
    if not ours:
        return None
    try:
        return parse_digest(ours[0]).get("sha-256")
    except ValueError:
        return None
