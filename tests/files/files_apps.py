"""The apps the real-server tests serve: a file, a ZIP, a static tree, a spooled live feed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sluicegate.http.files import FileResponse, StaticDirectory
from sluicegate.http.seekable import SeekableResponse
from sluicegate.http.spool import Spool
from sluicegate.http.zipstream import CrcCache, ZipMember, ZipStream


def live_bytes(size: int, seed: int = 11) -> bytes:
    return random.Random(seed).randbytes(size)


async def live_feed(data: bytes, chunk: int = 16 * 1024) -> AsyncIterator[bytes]:
    """A source that cannot pause: it produces on its own schedule, in small pieces."""
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]
        if i % (chunk * 16) == 0:
            await asyncio.sleep(0.001)


class Site:
    """Routes: /file, /zip, /static/..., /live, /live-sized, /spool/<id>."""

    def __init__(self, tmp: Path, *, file_size: int = 2_000_000, live_size: int = 2_000_000):
        rng = random.Random(5)
        self.file = tmp / "payload.bin"
        self.file.write_bytes(rng.randbytes(file_size))
        tree = tmp / "tree"
        (tree / "sub").mkdir(parents=True)
        self.members_paths = []
        for i, size in enumerate([0, 10, 70_000, 400_000, 1_000_003]):
            p = tree / "sub" / f"m{i}.dat"
            p.write_bytes(rng.randbytes(size))
            self.members_paths.append(p)
        (tree / "hello.txt").write_bytes(b"hello")
        (tmp / "secret.txt").write_bytes(b"top secret")
        (tree / "escape").symlink_to(tmp / "secret.txt")
        self.tree = tree
        self.static = StaticDirectory(tree)
        self.crc_cache = CrcCache()
        self.spool = Spool(tmp / "spool", wait_timeout=10, ttl=60)
        self.live_data = live_bytes(live_size)

    def zip(self) -> ZipStream:
        members = [ZipMember.from_path(p, f"sub/{p.name}") for p in self.members_paths]
        return ZipStream(members, crc_cache=self.crc_cache)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        app: Any
        if path == "/file":
            app = FileResponse(self.file)
        elif path == "/zip":
            app = SeekableResponse(self.zip(), filename="bundle.zip")
        elif path.startswith("/static/"):
            scope = {**scope, "root_path": "/static"}
            app = self.static
        elif path == "/live":
            app = self.spool.stream(live_feed(self.live_data), filename="live.bin")
        elif path == "/live-sized":
            app = self.spool.stream(
                live_feed(self.live_data), filename="live.bin", size=len(self.live_data)
            )
        elif path.startswith("/spool/"):
            app = self.spool
        else:
            app = FileResponse(self.tree / "missing")
        await app(scope, receive, send)
