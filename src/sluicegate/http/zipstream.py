"""A ZIP archive streamed from a file list, with a size known up front and resumable anywhere.

The archive holds *stored* (uncompressed) members, so every byte's position follows
from the names and sizes alone: :class:`ZipLayout` computes, without reading a file,
the total size and where each local header, each member's data, each central
directory record and the end records start. :class:`ZipStream` is a
:class:`~sluicegate.http.seekable.SeekableSource` built on it: ``open(offset)`` starts at
any byte, so :class:`~sluicegate.http.seekable.SeekableResponse` gives the archive a
``Content-Length``, ``Range`` and ``If-Range``, and a broken download resumes::

    members = [ZipMember.from_path(p, name=p.name) for p in sorted(folder.iterdir())]
    app = SeekableResponse(ZipStream(members), filename="photos.zip")

**CRC-32s.** A stored member's CRC-32 goes into its local header (no data
descriptors), so the archive is byte-for-byte a pure function of the members'
names, sizes, mtimes and contents, and any range of it can be regenerated. The CRC
of a member is computed when it is first needed, by reading the member once before
its data is sent (the page cache makes the second read cheap), and kept in a bounded
cache keyed by path, device, inode, size and mtime. A resumed request needs the CRCs
of members it does not resend (the central directory lists them all): they come from
the cache, or from a local read of those files: disk time, never network time.
Data descriptors (CRC after the data) would save that first read but not the resume
problem, and several streaming unzippers refuse stored members with descriptors.

**ZIP64** records are written exactly when needed: a member of 4 GiB or more, an
offset at or past 4 GiB, or more than 65 535 members. Member times are UTC (the
format has no zone) so the bytes, and the ETag, do not depend on the server's TZ.

zipstream-ng (PyPI) streams sized stored archives too, but computes CRCs while
streaming and writes data descriptors, and cannot start at an offset; seeking is the
whole point here, so the few hundred lines of layout are our own.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sluicegate.engine.sources import MAX_FILE_READ
from sluicegate.errors import ConfigError, SourceChanged

__all__ = ["CrcCache", "ZipLayout", "ZipMember", "ZipStream"]

ZIP64_LIMIT = 0xFFFFFFFF
"""Sizes and offsets at or above this need ZIP64 fields."""
MAX_ENTRIES_ZIP32 = 0xFFFF

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")  # 20 bytes
_FLAG_UTF8 = 0x0800
_UNIX = 3


@dataclass(frozen=True)
class ZipMember:
    """One stored member of the archive.

    Attributes:
        name: Path inside the archive, ``/``-separated, relative, without ``..``.
        size: Length of the data in bytes.
        mtime: Modification time (POSIX seconds), stored at 2-second precision, UTC.
        read: ``read(offset)`` yields the data from ``offset`` to the end.
        crc32: The CRC-32 when known (else computed by reading, once, and cached).
        identity: What distinguishes this content from other content of the same
            name, size and mtime (device/inode for files); part of the archive ETag.
        mode: Unix permission bits stored in the central directory.
        cache_key: Key of this content's CRC in a :class:`CrcCache` (files: path,
            device, inode, size, mtime), or ``None`` to not cache it.
    """

    name: str
    size: int
    mtime: float
    read: Callable[[int], Iterator[bytes]] = field(repr=False)
    crc32: int | None = None
    identity: str = ""
    mode: int = 0o644
    cache_key: tuple[object, ...] | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], name: str | None = None) -> ZipMember:
        """A member for the regular file at ``path`` (``name`` defaults to its base name).

        The file is ``stat``-ed now; if it later changes size or mtime, reading it
        raises :class:`~sluicegate.errors.StreamError` and the response aborts.
        """
        path = os.fspath(path)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path!r} is not a regular file")
        identity = f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return cls(
            name=os.path.basename(path) if name is None else name,
            size=st.st_size,
            mtime=st.st_mtime,
            read=_FileReader(path, st),
            crc32=_CACHE.get(key),
            identity=identity,
            mode=stat.S_IMODE(st.st_mode),
            cache_key=key,
        )

    @classmethod
    def from_bytes(cls, name: str, data: bytes, mtime: float = 315532800.0) -> ZipMember:
        """A member held in memory (its CRC is computed now)."""

        def read(offset: int) -> Iterator[bytes]:
            yield data[offset:]

        crc = zlib.crc32(data)
        return cls(name, len(data), mtime, read, crc, identity=f"crc:{crc:08x}")


class CrcCache:
    """A bounded, thread-safe LRU of CRC-32s keyed by file identity."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[object, ...], int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> int | None:
        """The cached CRC for ``key``, or ``None``."""
        with self._lock:
            crc = self._data.get(key)
            if crc is not None:
                self._data.move_to_end(key)
            return crc

    def put(self, key: tuple[object, ...], crc: int) -> None:
        """Remember ``crc`` for ``key``, evicting the least recently used beyond capacity."""
        with self._lock:
            self._data[key] = crc
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)


_CACHE = CrcCache()


class _FileReader:
    """``read(offset)`` for a file, checking it still is what was listed."""

    def __init__(self, path: str, st: os.stat_result) -> None:
        self.path = path
        self.st = st

    def __call__(self, offset: int) -> Iterator[bytes]:
        st = self.st
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            pos = offset
            while pos < st.st_size:
                data = os.pread(fd, min(MAX_FILE_READ, st.st_size - pos), pos)
                now = os.fstat(fd)
                if (
                    not data
                    or now.st_ino != st.st_ino
                    or now.st_size != st.st_size
                    or now.st_mtime_ns != st.st_mtime_ns
                ):
                    raise SourceChanged(f"{self.path!r} changed since the archive was listed")
                yield data
                pos += len(data)
        finally:
            os.close(fd)


def _dos_time(mtime: float) -> tuple[int, int]:
    t = time.gmtime(max(mtime, 315532800))  # the DOS epoch is 1980-01-01
    if t.tm_year > 2107:
        t = time.gmtime(4354819198)  # 2107-12-31 23:59:58, the last DOS time
    dos_date = (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday
    dos_time = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2
    return dos_time, dos_date


def _check_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
        or len(raw) > 0xFFFF
    ):
        raise ConfigError(f"bad member name {name!r}: use a relative /-separated path")
    return raw


class ZipLayout:
    """Where every part of a stored archive starts, computed from names and sizes only.

    Sans-IO: no file is read. ``crc`` is asked for a member's CRC-32 only when its
    local header or central record is produced (:meth:`local_header`,
    :meth:`central_record`).

    Attributes:
        header_offsets: Offset of each member's local header.
        data_offsets: Offset of each member's first data byte.
        cd_offset: Offset of the central directory.
        cd_size: Length of the central directory.
        zip64: Whether the end records are ZIP64.
        size: Total length of the archive.
    """

    def __init__(self, members: Sequence[ZipMember]) -> None:
        names: set[str] = set()
        self.members = list(members)
        self._names: list[bytes] = []
        self.header_offsets: list[int] = []
        self.data_offsets: list[int] = []
        self._cd_starts: list[int] = []
        pos = 0
        for m in self.members:
            if m.name in names:
                raise ConfigError(f"duplicate member name {m.name!r}")
            names.add(m.name)
            if m.size < 0:
                raise ConfigError(f"member {m.name!r} has a negative size")
            raw = _check_name(m.name)
            self._names.append(raw)
            self.header_offsets.append(pos)
            pos += _LOCAL.size + len(raw) + (20 if m.size >= ZIP64_LIMIT else 0)
            self.data_offsets.append(pos)
            pos += m.size
        self.cd_offset = pos
        for i in range(len(self.members)):
            self._cd_starts.append(pos)
            pos += _CENTRAL.size + len(self._names[i]) + self._central_extra_len(i)
        self.cd_size = pos - self.cd_offset
        n = len(self.members)
        self.zip64 = (
            n >= MAX_ENTRIES_ZIP32 or self.cd_offset >= ZIP64_LIMIT or self.cd_size >= ZIP64_LIMIT
        )
        self.end_offset = pos
        self.size = pos + (_EOCD64.size + _LOCATOR64.size if self.zip64 else 0) + _EOCD.size

    def _central_extra_len(self, i: int) -> int:
        n = (16 if self.members[i].size >= ZIP64_LIMIT else 0) + (
            8 if self.header_offsets[i] >= ZIP64_LIMIT else 0
        )
        return n + 4 if n else 0

    def _flags(self, i: int) -> int:
        return 0 if self._names[i].isascii() else _FLAG_UTF8

    def local_header(self, i: int, crc: int) -> bytes:
        """The local file header of member ``i``."""
        m, name = self.members[i], self._names[i]
        big = m.size >= ZIP64_LIMIT
        dos_time, dos_date = _dos_time(m.mtime)
        size32 = ZIP64_LIMIT if big else m.size
        extra = struct.pack("<HHQQ", 1, 16, m.size, m.size) if big else b""
        head = _LOCAL.pack(
            0x04034B50, 45 if big else 20, self._flags(i), 0, dos_time, dos_date,
            crc, size32, size32, len(name), len(extra),
        )  # fmt: skip
        return head + name + extra

    def central_record(self, i: int, crc: int) -> bytes:
        """The central directory record of member ``i``."""
        m, name = self.members[i], self._names[i]
        big = m.size >= ZIP64_LIMIT
        far = self.header_offsets[i] >= ZIP64_LIMIT
        fields = ([m.size, m.size] if big else []) + ([self.header_offsets[i]] if far else [])
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        dos_time, dos_date = _dos_time(m.mtime)
        size32 = ZIP64_LIMIT if big else m.size
        needed = 45 if extra else 20
        record = _CENTRAL.pack(
            0x02014B50, _UNIX << 8 | 45, needed, self._flags(i), 0, dos_time, dos_date,
            crc, size32, size32, len(name), len(extra), 0, 0, 0,
            (stat.S_IFREG | (m.mode & 0o7777)) << 16,
            ZIP64_LIMIT if far else self.header_offsets[i],
        )  # fmt: skip
        return record + name + extra

    def end_records(self) -> bytes:
        """The (ZIP64 end record, ZIP64 locator and) end of central directory record."""
        n = len(self.members)
        out = b""
        if self.zip64:
            out += _EOCD64.pack(
                0x06064B50, _EOCD64.size - 12, _UNIX << 8 | 45, 45, 0, 0,
                n, n, self.cd_size, self.cd_offset,
            )  # fmt: skip
            out += _LOCATOR64.pack(0x07064B50, 0, self.end_offset, 1)
        out += _EOCD.pack(
            0x06054B50, 0, 0,
            min(n, MAX_ENTRIES_ZIP32), min(n, MAX_ENTRIES_ZIP32),
            min(self.cd_size, ZIP64_LIMIT), min(self.cd_offset, ZIP64_LIMIT), 0,
        )  # fmt: skip
        return out

    def member_at(self, offset: int) -> int:
        """The index of the member whose header or data holds ``offset`` (< cd_offset)."""
        return bisect.bisect_right(self.header_offsets, offset) - 1

    def record_at(self, offset: int) -> int:
        """The index of the central record holding ``offset`` (cd_offset <= offset)."""
        return bisect.bisect_right(self._cd_starts, offset) - 1

    def record_offset(self, i: int) -> int:
        """Where central record ``i`` starts."""
        return self._cd_starts[i]


class ZipStream:
    """A :class:`~sluicegate.http.seekable.SeekableSource` for a stored ZIP of ``members``.

    Attributes:
        size: Length of the whole archive, known before any byte is read.
        etag: Strong entity-tag over every member's name, size, mtime, mode and
            identity: a changed file list or file makes a new ETag, so resumes
            with If-Range start over instead of mixing two archives.
        last_modified: The newest member's mtime.
        content_type: ``application/zip``.

    Raises:
        ConfigError: duplicate or unsafe member names (absolute, ``..``, backslashes).
    """

    content_type = "application/zip"

    def __init__(self, members: Iterable[ZipMember], *, crc_cache: CrcCache | None = None) -> None:
        self.layout = ZipLayout(list(members))
        self.size = self.layout.size
        self._cache = _CACHE if crc_cache is None else crc_cache
        digest = hashlib.sha256(b"sluicegate-zip-1")
        for m in self.layout.members:
            digest.update(f"{m.name}\0{m.size}\0{m.mtime!r}\0{m.mode}\0{m.identity}\0".encode())
        self.etag = f'"zip-{digest.hexdigest()[:32]}"'
        self.last_modified = max((m.mtime for m in self.layout.members), default=None)
        self._crcs: list[int | None] = [m.crc32 for m in self.layout.members]

    def crc(self, i: int) -> int:
        """The CRC-32 of member ``i``: given, cached, or computed by reading it."""
        known = self._crcs[i]
        if known is not None:
            return known
        m = self.layout.members[i]
        key = m.cache_key
        crc = self._cache.get(key) if key is not None else None
        if crc is None:
            crc, seen = 0, 0
            for chunk in m.read(0):
                crc = zlib.crc32(chunk, crc)
                seen += len(chunk)
            if seen != m.size:
                raise SourceChanged(f"member {m.name!r} has {seen} bytes, not {m.size}")
            if key is not None:
                self._cache.put(key, crc)
        self._crcs[i] = crc
        return crc

    def open(self, offset: int) -> Iterator[bytes]:
        """Yield the archive from byte ``offset`` to its end."""
        if not 0 <= offset <= self.size:
            raise ConfigError(f"offset {offset} is outside the archive (0..{self.size})")
        layout = self.layout
        pos = offset
        if pos < layout.cd_offset:
            for i in range(layout.member_at(pos), len(layout.members)):
                header = layout.local_header(i, self.crc(i))
                skip = pos - layout.header_offsets[i]
                if skip < len(header):
                    yield header[skip:]
                    skip = 0
                else:
                    skip -= len(header)
                yield from _exactly(layout.members[i], skip)
                pos = layout.header_offsets[i + 1] if i + 1 < len(layout.members) else 0
            pos = layout.cd_offset
        if pos < layout.end_offset:
            first = layout.record_at(pos)
            skip = pos - layout.record_offset(first)
            batch: list[bytes] = []
            for i in range(first, len(layout.members)):
                record = layout.central_record(i, self.crc(i))
                batch.append(record[skip:] if skip else record)
                skip = 0
                if len(batch) >= 512:  # small records, coalesced into fewer chunks
                    yield b"".join(batch)
                    batch = []
            if batch:
                yield b"".join(batch)
            pos = layout.end_offset
        yield layout.end_records()[pos - layout.end_offset :]


def _exactly(member: ZipMember, offset: int) -> Iterator[bytes]:
    """The member's data from ``offset``; raise if it is not exactly as long as listed."""
    left = member.size - offset
    if left <= 0:
        return
    chunks = member.read(offset)
    try:
        for chunk in chunks:
            if len(chunk) > left:
                raise SourceChanged(f"member {member.name!r} is longer than {member.size} bytes")
            if chunk:
                yield chunk
                left -= len(chunk)
            if left == 0:
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # releases a file member's descriptor now, not at garbage collection
    raise SourceChanged(f"member {member.name!r} ended {left} bytes early")
