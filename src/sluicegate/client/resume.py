"""Decide how to continue a partial download with ``Range`` + ``If-Range`` (sans-IO).

A partial download ``FILE.part`` has a sidecar ``FILE.part.json`` holding the
validator the server gave (``ETag`` or ``Last-Modified``). The next request asks
for ``Range: bytes=N-`` with ``If-Range: <validator>``; the server answers

* ``206`` from byte N: append;
* ``200`` (any 2xx but 206): the resource changed (or ranges are unsupported):
  start over with this body;
* ``416`` with ``Content-Range: bytes */N``: the part is already the whole file.

::

    >>> meta = PartMeta(url="http://h/f", etag='"v1"')
    >>> request_headers(100, meta, "http://h/f")
    (100, [('Range', 'bytes=100-'), ('If-Range', '"v1"')])
    >>> plan_response(206, {"content-range": "bytes 100-199/200"}, 100)
    Plan(kind='append', start=100, size=200)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "PartMeta",
    "Plan",
    "parse_content_range",
    "plan_response",
    "request_headers",
]


@dataclass(frozen=True, slots=True)
class PartMeta:
    """What ``FILE.part.json`` records about a partial download."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None

    @property
    def validator(self) -> str | None:
        """The ``If-Range`` value: a strong ETag, else Last-Modified, else ``None``.

        RFC 9110 forbids weak ETags in If-Range, so ``W/"..."`` is never used.
        """
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @classmethod
    def from_headers(cls, url: str, headers: Mapping[str, str], size: int | None) -> PartMeta:
        """Build from response headers (lower-case names)."""
        return cls(url, headers.get("etag"), headers.get("last-modified"), size)

    def save(self, path: Path) -> None:
        """Write as JSON to ``path``."""
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> PartMeta | None:
        """Read from ``path``; a missing or unreadable file gives ``None``."""
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            size = data.get("size")
            return cls(
                url=str(data["url"]),
                etag=data.get("etag"),
                last_modified=data.get("last_modified"),
                size=int(size) if size is not None else None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def request_headers(
    part_size: int, meta: PartMeta | None, url: str
) -> tuple[int, list[tuple[str, str]]]:
    """The offset to resume from and the headers asking for it.

    Without a validator for the same URL we cannot know the part still matches
    the resource, so we start over (offset 0, no headers).
    """
    if part_size <= 0 or meta is None or meta.url != url or meta.validator is None:
        return 0, []
    return part_size, [("Range", f"bytes={part_size}-"), ("If-Range", meta.validator)]


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", re.IGNORECASE)


def parse_content_range(value: str) -> tuple[int | None, int | None, int | None] | None:
    """``bytes 10-19/100`` → ``(10, 19, 100)``; ``bytes */100`` → ``(None, None, 100)``.

    ``*`` as the length gives ``None``; a malformed value gives ``None``.
    """
    m = _CONTENT_RANGE.fullmatch(value)
    if m is None:
        return None
    first = int(m.group(1)) if m.group(1) is not None else None
    last = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return first, last, total


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a response to a (possibly ranged) request.

    ``kind`` is ``write`` (body is the whole file, start over), ``append`` (body
    continues the part at ``start``), ``done`` (the part is already whole),
    ``retry`` (ask again without a range) or ``error`` (a status we do not accept).
    ``size`` is the full size when the response tells it.
    """

    kind: Literal["write", "append", "done", "retry", "error"]
    start: int = 0
    size: int | None = None


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def plan_response(status: int, headers: Mapping[str, str], offset: int) -> Plan:
    """Decide from ``status`` and ``headers`` (lower-case names) what to do.

    ``offset`` is where the part ends (0 when no range was asked for).
    """
    if 200 <= status < 300 and status != 206:
        return Plan("write", 0, _content_length(headers))
    if status == 206 and offset > 0:
        parsed = parse_content_range(headers.get("content-range", ""))
        if parsed is None or parsed[0] != offset:
            return Plan("retry")
        return Plan("append", offset, parsed[2])
    if status == 416 and offset > 0:
        parsed = parse_content_range(headers.get("content-range", ""))
        total = parsed[2] if parsed is not None else None
        if total is not None and total == offset:
            return Plan("done", offset, total)
        return Plan("retry")
    return Plan("error")
