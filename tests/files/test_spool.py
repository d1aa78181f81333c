"""The spool in process: resume, detached writer, limits, expiry, orphans, failures."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from files_support import call

from sluicegate.errors import ConfigError, StreamError
from sluicegate.http.spool import Spool

DATA = random.Random(9).randbytes(300_000)


async def feed(data: bytes = DATA, chunk: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]
        await asyncio.sleep(0)


async def until(condition: Any) -> None:
    """Poll a spool's state (it has no event to wait on from outside), for 5 s at most."""
    async with asyncio.timeout(5):
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.005)


async def leave_after(app: Any, first_bytes: int) -> list[dict[str, Any]]:
    """Run ``app`` as a client that goes away after ``first_bytes`` body bytes."""
    messages: list[dict[str, Any]] = []
    got = 0
    gone = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        nonlocal got
        if gone.is_set():
            raise OSError("client went away")
        messages.append(message)
        got += len(message.get("body", b""))
        if got >= first_bytes:
            gone.set()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/live", "headers": []}
    # The client leaves quietly; the spool must go on without it.
    await app(scope, receive, send)
    return messages


async def test_live_then_resume(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    status, headers, body, _ = await call(spool.stream(feed(), filename="feed.bin"))
    assert (status, body) == (200, DATA)
    tid = headers["transfer-id"]
    assert headers["content-location"] == f"/spool/{tid}"
    assert headers["etag"] == f'"spool-{tid}"'
    assert "content-length" not in headers  # the live length is unknown
    await until(lambda: spool.status(tid).state == "completed")  # type: ignore[union-attr]
    etag = headers["etag"]
    status, headers, body, _ = await call(
        spool, path=f"/spool/{tid}", headers={"range": "bytes=1000-", "if-range": etag}
    )
    assert (status, body, headers["etag"]) == (206, DATA[1000:], etag)
    assert headers["content-range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA)}"
    assert headers["content-disposition"] == 'attachment; filename="feed.bin"'
    status, _, body, _ = await call(
        spool, path=f"/spool/{tid}", headers={"range": "bytes=1000-", "if-range": '"other"'}
    )
    assert (status, body) == (200, DATA)
    # Mounted at /spool the route sees /<id> only.
    status, _, body, _ = await call(spool, path=f"/{tid}")
    assert (status, body) == (200, DATA)
    await spool.aclose()
    assert os.listdir(tmp_path) == []


async def test_writer_goes_on_after_the_client_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    response = spool.stream(feed())
    await leave_after(response, 20_000)
    tid = response.transfer_id
    assert tid is not None
    await until(lambda: spool.status(tid).state == "completed")  # type: ignore[union-attr]
    status, _, body, _ = await call(spool, path=f"/spool/{tid}", headers={"range": "bytes=20000-"})
    assert (status, body) == (206, DATA[20_000:])
    await spool.aclose()


async def test_resume_waits_for_bytes_not_spooled_yet(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def gated() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        await gate.wait()
        yield DATA[1000:]

    spool = Spool(tmp_path, wait_timeout=5)
    response = spool.stream(gated(), size=len(DATA))
    await leave_after(response, 500)
    tid = response.transfer_id
    assert tid is not None and spool.status(tid).state == "streaming"  # type: ignore[union-attr]
    resume = asyncio.create_task(call(spool, path=f"/spool/{tid}", headers={"range": "bytes=500-"}))
    await asyncio.sleep(0.05)
    assert not resume.done()  # waiting for bytes 1000.. that do not exist yet
    gate.set()
    status, headers, body, _ = await resume
    assert (status, body) == (206, DATA[500:])
    assert headers["content-range"] == f"bytes 500-{len(DATA) - 1}/{len(DATA)}"
    await spool.aclose()


async def test_unknown_length_still_spooling_is_503(tmp_path: Path) -> None:
    async def stuck() -> AsyncIterator[bytes]:
        yield b"x" * 100
        await asyncio.Event().wait()

    spool = Spool(tmp_path, wait_timeout=0.1)
    response = spool.stream(stuck())
    await leave_after(response, 50)
    tid = response.transfer_id
    status, headers, _, _ = await call(spool, path=f"/spool/{tid}", headers={"range": "bytes=50-"})
    assert (status, headers["retry-after"]) == (503, "5")
    assert headers["content-type"] == "application/problem+json"
    await spool.aclose()


async def test_transfer_limit_truncates_and_refuses_resume_past_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_transfer_bytes=100_000)
    status, headers, body, _ = await call(spool.stream(feed()))
    # The connected client still gets every byte: past the limit, straight from the source.
    assert (status, body) == (200, DATA)
    tid = headers["transfer-id"]
    state = spool.status(tid)
    assert state is not None and state.state == "truncated" and state.spooled == 100_000
    status, headers, body, _ = await call(
        spool, path=f"/spool/{tid}", headers={"range": "bytes=0-"}
    )
    assert (status, headers["content-range"]) == (416, "bytes */100000")
    assert b"not offered past" in body
    status, _, _, _ = await call(spool, path=f"/spool/{tid}")
    assert status == 410
    assert os.stat(spool.directory + "/" + os.listdir(spool.directory)[0]).st_size == 100_000
    await spool.aclose()


async def test_truncated_without_client_closes_the_source(tmp_path: Path) -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"y" * 10_000
                await asyncio.sleep(0)
        finally:
            closed.set()

    spool = Spool(tmp_path, max_transfer_bytes=50_000)
    response = spool.stream(endless())
    await leave_after(response, 1)
    async with asyncio.timeout(5):
        await closed.wait()
    state = spool.status(response.transfer_id or "")
    assert state is not None and (state.state, state.spooled) == ("truncated", 50_000)
    await spool.aclose()


async def test_total_limit_streams_without_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_total_bytes=50_000)
    _, _, body, _ = await call(spool.stream(feed()))
    assert body == DATA and spool.total == 50_000
    status, headers, body, _ = await call(spool.stream(feed()))
    assert (status, body) == (200, DATA)
    assert "transfer-id" not in headers and "content-location" not in headers
    assert len(spool.transfers()) == 1
    await spool.aclose()
    assert spool.total == 0


async def test_failed_source_aborts_and_is_not_resumable(tmp_path: Path) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield DATA[:70_000]
        await asyncio.sleep(0.01)
        raise RuntimeError("upstream broke")

    spool = Spool(tmp_path)
    response = spool.stream(failing())
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    with pytest.raises(StreamError):
        await response({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert not any(m.get("more_body") is False for m in messages[1:])  # aborted, not ended
    tid = response.transfer_id
    status, _, _, _ = await call(spool, path=f"/spool/{tid}", headers={"range": "bytes=10-"})
    assert status == 416
    await spool.aclose()


async def test_declared_size_mismatch_fails(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    response = spool.stream(feed(), size=len(DATA) + 1)
    with pytest.raises(StreamError):
        await call(response)
    assert spool.status(response.transfer_id or "").state == "failed"  # type: ignore[union-attr]
    await spool.aclose()


async def test_expiry_removes_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, ttl=30)
    _, headers, _, _ = await call(spool.stream(feed()))
    tid = headers["transfer-id"]
    await until(lambda: spool.status(tid).state == "completed")  # type: ignore[union-attr]
    assert spool.sweep() == 0 and len(os.listdir(tmp_path)) == 1
    assert spool.sweep(now=asyncio.get_running_loop().time() + 31) == 1
    assert os.listdir(tmp_path) == [] and spool.total == 0
    status, headers, _, _ = await call(spool, path=f"/spool/{tid}")
    assert (status, headers["content-type"]) == (404, "application/problem+json")


def _dead_pid() -> int:
    for pid in range(4_000_000, 4_100_000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise RuntimeError("no free pid")


def test_orphans_removed_at_startup(tmp_path: Path) -> None:
    orphan = tmp_path / f"{_dead_pid()}-AAAAAAAAAAAAAAAA.spool"
    mine_before = tmp_path / f"{os.getpid()}-BBBBBBBBBBBBBBBB.spool"
    neighbour = tmp_path / f"{os.getppid()}-CCCCCCCCCCCCCCCC.spool"
    foreign = tmp_path / "notes.txt"
    for p in (orphan, mine_before, neighbour, foreign):
        p.write_bytes(b"x")
    spool = Spool(tmp_path)
    assert spool.removed_orphans == 2
    assert sorted(os.listdir(tmp_path)) == sorted([neighbour.name, foreign.name])


async def test_route_errors(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert (await call(spool, path="/spool/nope"))[0] == 404
    assert (await call(spool, path="/spool/../../etc/passwd"))[0] == 404
    status, headers, _, _ = await call(spool, method="POST", path="/spool/AAAAAAAAAAAAAAAA")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    status, headers, body, _ = await call(spool.stream(feed()), method="HEAD")
    assert (status, body, spool.transfers()) == (200, b"", [])
    with pytest.raises(ConfigError):
        Spool(tmp_path, ttl=0)


async def test_declared_size_too_small_aborts_the_live_body(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    response = spool.stream(feed(), size=len(DATA) - 1)
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    with pytest.raises(StreamError):
        await response({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert sum(len(m.get("body", b"")) for m in messages[1:]) < len(DATA)
    assert not any(m.get("more_body") is False for m in messages[1:])
    await spool.aclose()


def _on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.spool"))


async def test_total_limit_holds_under_concurrency(tmp_path: Path) -> None:
    """60 transfers at once against a 1 MiB total: never more on disk than the limit."""
    limit = 1 << 20
    spool = Spool(tmp_path, max_total_bytes=limit)
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _on_disk(tmp_path))
            assert spool.total <= limit
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(call(spool.stream(feed(chunk=64 << 10))) for _ in range(60)))
    done.set()
    await watcher
    assert all(body == DATA for _, _, body, _ in results)  # every client got everything
    peak = max(peak, _on_disk(tmp_path))
    assert peak <= limit, f"{peak / limit:.2f}x the limit on disk"
    assert spool.total == _on_disk(tmp_path) == sum(s.spooled for s in spool.transfers())
    assert spool.total > limit // 2  # the limit was really reached, not avoided
    await spool.aclose()
    assert spool.total == 0


async def test_a_failed_write_releases_its_reservation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sluicegate.http.spool as spool_module

    writes = 0
    real = spool_module._write_all

    def flaky(fd: int, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            os.write(fd, data[: len(data) // 2])  # half of it lands, then the disk fails
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(spool_module, "_write_all", flaky)
    spool = Spool(tmp_path, max_total_bytes=1 << 20)
    response = spool.stream(feed())
    with pytest.raises(StreamError):
        await call(response)
    state = spool.status(response.transfer_id or "")
    assert state is not None and state.state == "failed"
    assert state.spooled == 20_000 == spool.total == _on_disk(tmp_path)
    await spool.aclose()
    assert spool.total == 0


def test_the_spool_speaks_the_shared_vocabulary_of_transfer_states() -> None:
    from typing import get_args

    from sluicegate.http.spool import SpoolState
    from sluicegate.interfaces import TransferState

    shared = {str(s) for s in TransferState}
    assert set(get_args(SpoolState)) - shared == {"truncated"}  # the spool's own word
