"""The streamed ZIP: layout computed up front, valid archives, any offset, ZIP64."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from files_support import RangeFile

from sluicegate.errors import ConfigError, StreamError
from sluicegate.http.zipstream import ZIP64_LIMIT, CrcCache, ZipLayout, ZipMember, ZipStream


def _files(tmp_path: Path, sizes: list[int]) -> list[Path]:
    rng = random.Random(7)
    paths = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rng.randbytes(size))
        paths.append(p)
    return paths


def test_valid_archive_and_every_offset(tmp_path: Path) -> None:
    paths = _files(tmp_path, [0, 1, 4096, 300_001])
    members = [ZipMember.from_path(p, f"dir/{p.name}") for p in paths]
    members.append(ZipMember.from_bytes("r\u00e9sum\u00e9.txt", b"hello"))
    zs = ZipStream(members, crc_cache=CrcCache())
    data = b"".join(zs.open(0))
    assert len(data) == zs.size
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == [*(f"dir/{p.name}" for p in paths), "r\u00e9sum\u00e9.txt"]
    for p in paths:
        assert archive.read(f"dir/{p.name}") == p.read_bytes()
    assert not any(i.flag_bits & 0x08 for i in archive.infolist())  # no data descriptors
    # Every start offset regenerates exactly the tail: a resume can start anywhere.
    for offset in [*range(0, 200), *range(200, zs.size, 613), zs.size - 1, zs.size]:
        assert b"".join(zs.open(offset)) == data[offset:], offset
    if shutil.which("unzip"):
        target = tmp_path / "out.zip"
        target.write_bytes(data)
        result = subprocess.run(["unzip", "-t", str(target)], capture_output=True, timeout=30)
        assert result.returncode == 0, result.stdout


def test_layout_offsets_without_reading() -> None:
    def never(offset: int) -> Iterator[bytes]:
        raise AssertionError("the layout must not read data")

    members = [ZipMember(f"m{i}", size, 0.0, never, crc32=0) for i, size in enumerate([5, 0, 9])]
    layout = ZipLayout(members)
    assert layout.header_offsets == [0, 30 + 2 + 5, 30 + 2 + 5 + 30 + 2]
    assert layout.data_offsets == [32, 32 + 5 + 32, 32 + 5 + 32 + 32]
    assert layout.cd_offset == 32 * 3 + 14
    assert layout.cd_size == 3 * (46 + 2)
    assert not layout.zip64
    assert layout.size == layout.cd_offset + layout.cd_size + 22


def test_etag_follows_the_file_list(tmp_path: Path) -> None:
    paths = _files(tmp_path, [10, 20])
    a = ZipStream([ZipMember.from_path(p) for p in paths])
    b = ZipStream([ZipMember.from_path(p) for p in paths])
    assert a.etag == b.etag and a.etag.startswith('"zip-')
    os.utime(paths[0], ns=(1, 1_000_000_000))
    c = ZipStream([ZipMember.from_path(p) for p in paths])
    assert c.etag != a.etag
    d = ZipStream([ZipMember.from_path(paths[0], "renamed"), ZipMember.from_path(paths[1])])
    assert d.etag != c.etag


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "a\\b", "", "a//b", "nul\x00"])
def test_unsafe_names_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        ZipStream([ZipMember.from_bytes(name, b"x")])


def test_duplicate_names_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        ZipStream([ZipMember.from_bytes("a", b"1"), ZipMember.from_bytes("a", b"2")])


def test_crc_computed_once_and_cached(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [100_000])
    cache = CrcCache()
    reads: list[int] = []
    member = ZipMember.from_path(path)
    original = member.read

    def counting(offset: int) -> Iterator[bytes]:
        reads.append(offset)
        return original(offset)

    counted = ZipMember(
        member.name, member.size, member.mtime, counting, None, member.identity,
        cache_key=member.cache_key,
    )  # fmt: skip
    zs = ZipStream([counted], crc_cache=cache)
    # Resuming in the central directory needs the CRC of data it does not resend.
    tail = b"".join(zs.open(zs.layout.cd_offset + 3))
    assert reads == [0]  # one read, for the CRC only
    assert member.cache_key is not None
    assert cache.get(member.cache_key) == zlib.crc32(path.read_bytes())
    b"".join(zs.open(0))
    assert reads == [0, 0]  # the data, but no second CRC pass
    assert b"".join(ZipStream([member], crc_cache=cache).open(0)).endswith(tail)


def test_file_changed_after_listing_aborts(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [50_000])
    zs = ZipStream([ZipMember.from_path(path)], crc_cache=CrcCache())
    path.write_bytes(b"shorter")
    with pytest.raises(StreamError):
        b"".join(zs.open(0))


def test_zip64_many_entries() -> None:
    n = 70_000
    members = [ZipMember.from_bytes(f"e{i}", b"%d" % i) for i in range(n)]
    zs = ZipStream(members)
    assert zs.layout.zip64
    data = b"".join(zs.open(0))
    assert len(data) == zs.size
    archive = zipfile.ZipFile(io.BytesIO(data))
    infos = archive.infolist()
    assert len(infos) == n
    assert archive.read("e69999") == b"69999"
    # The classic end record says "see ZIP64" with 0xFFFF entries.
    assert data[-22:-20] == b"PK" and data[-14:-12] == b"\xff\xff"


def test_zip64_member_over_4gib() -> None:
    big = ZIP64_LIMIT + 10

    def zeros(offset: int) -> Iterator[bytes]:
        left = big - offset
        block = bytes(1 << 20)
        while left > 0:
            n = min(left, len(block))
            yield block[:n]
            left -= n

    crc_of_zeros = 0  # not checked: the test never reads the big member's data
    members = [
        ZipMember.from_bytes("before.txt", b"before"),
        ZipMember("big.bin", big, 0.0, zeros, crc32=crc_of_zeros),
        ZipMember.from_bytes("after.txt", b"after"),
    ]
    zs = ZipStream(members)
    assert zs.layout.zip64 and zs.size > big
    assert zs.layout.header_offsets[2] > ZIP64_LIMIT
    archive = zipfile.ZipFile(RangeFile(zs))
    infos = {i.filename: i for i in archive.infolist()}
    assert infos["big.bin"].file_size == big
    assert infos["after.txt"].header_offset == zs.layout.header_offsets[2]
    assert archive.read("after.txt") == b"after"
    assert archive.read("before.txt") == b"before"
