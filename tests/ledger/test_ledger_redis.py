"""What only the Redis backend promises: heartbeats, lapse means interrupted, TTLs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from sluicegate.errors import ConfigError, LedgerError
from sluicegate.ledger import InvalidTransition, digest_of
from sluicegate.ledger.redis import RedisLedger

Victim = Callable[..., tuple[Any, dict[str, Any]]]


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    conn = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield conn
    await conn.aclose()


async def state_soon(ledger: RedisLedger, tid: str, want: str) -> None:
    for _ in range(250):  # 5 s
        if (await ledger.get(tid)).state == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{tid} never became {want}")


async def test_kill_9_keeps_completed_and_lapsed_heartbeats_read_interrupted(
    redis_url: str, prefix: str, victim: Victim
) -> None:
    proc, ids = victim("redis", redis_url, prefix)  # heartbeat_timeout=0.6 s
    async with RedisLedger(redis_url, prefix=prefix) as reader:
        for tid in ids["live"]:  # alive and beating: streaming, even past one timeout
            assert (await reader.get(tid)).state == "streaming"
        await asyncio.sleep(0.8)
        assert (await reader.get(ids["live"][0])).state == "streaming"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        for tid in ids["live"]:
            await state_soon(reader, tid, "interrupted")
            rec = await reader.get(tid)
            assert rec.bytes_sent == 300 and rec.ended_at is not None
            assert rec.ended_at >= rec.started_at
        done = await reader.get(ids["done"])
        assert done.state == "completed" and done.digest == digest_of(b"the completed body")


async def test_a_stalled_stream_is_kept_alive_by_the_heartbeat(redis_url: str, prefix: str) -> None:
    async with (
        RedisLedger(redis_url, prefix=prefix, heartbeat_timeout=0.3) as owner,
        RedisLedger(redis_url, prefix=prefix) as reader,
    ):
        tid = await owner.begin("GET", "/slow-reader")
        await owner.progress(tid, 10)
        await asyncio.sleep(1.0)  # no progress at all for three timeouts
        rec = await reader.get(tid)
        assert rec.state == "streaming" and rec.bytes_sent == 10  # the beat carried progress
        await owner.finish(tid, "completed", 20)
        assert (await reader.get(tid)).state == "completed"


async def test_a_lapsed_record_stays_interrupted(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with RedisLedger(redis_url, prefix=prefix) as owner:
        tid = await owner.begin("GET", "/x")
        await owner.flush()  # the record is written begin_delay later otherwise
        await client.hset(prefix + tid, "hb_until", "0")  # as if the owner had stalled
        async with RedisLedger(redis_url, prefix=prefix) as reader:
            assert (await reader.get(tid)).state == "interrupted"
        assert await client.hget(prefix + tid, "state") == "interrupted"  # written down
        with pytest.raises(InvalidTransition, match="interrupted"):
            await owner.finish(tid, "completed", 0)


async def test_records_expire(redis_url: str, prefix: str, client: aioredis.Redis) -> None:
    async with RedisLedger(redis_url, prefix=prefix, max_age=100) as ledger:
        tid = await ledger.begin("GET", "/ttl")
        await ledger.flush()
        assert 0 < await client.ttl(prefix + tid) <= 100
        await ledger.finish(tid, "completed", 0)
        assert 0 < await client.ttl(prefix + tid) <= 100
        assert await client.hget(prefix + tid, "state") == "completed"


async def test_a_client_we_do_not_own_stays_open(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with RedisLedger(client, prefix=prefix) as ledger:
        tid = await ledger.begin("GET", "/mine")
        await ledger.finish(tid, "completed", 1)
        assert (await ledger.get(tid)).state == "completed"  # decoded responses work too
    assert await client.ping()


async def test_unreachable_redis_fails_on_open() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(LedgerError, match="cannot reach redis"):
            await RedisLedger(f"redis://127.0.0.1:{port}/0").open()


@pytest.mark.parametrize(
    "options",
    [
        {"max_age": 0},
        {"heartbeat_timeout": 0},
        {"heartbeat_timeout": 1, "heartbeat_interval": 1},
        {"heartbeat_interval": -1},
        {"begin_delay": -0.1},
        {"heartbeat_timeout": 0.3, "begin_delay": 0.1},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RedisLedger("redis://127.0.0.1:1/0", **options)


class _Counted(RedisLedger):
    """Counts the pipelines (round trips) and what each carried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipelines: list[list[str]] = []

    async def _send(self, ops: list[Any]) -> list[Any]:
        self.pipelines.append([op.script for op in ops])
        return await super()._send(ops)


async def test_a_short_transfer_is_one_round_trip(redis_url: str, prefix: str) -> None:
    async with _Counted(redis_url, prefix=prefix) as ledger:
        tid = await ledger.begin("GET", "/small")
        await ledger.finish(tid, "completed", 5, digest=digest_of(b"hello"))
        assert ledger.pipelines == [["begin", "finish"]]
        assert (await ledger.get(tid)).state == "completed"


async def evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_short_transfer_is_one_script_call(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Begin and finish of a transfer that ended before its begin went out: one call."""
    async with RedisLedger(redis_url, prefix=prefix) as ledger:
        before = await evalsha_calls(client)
        tid = await ledger.begin("GET", "/small", size=5)
        await ledger.finish(tid, "failed", 3, error=ValueError("token=secret123"))
        assert await evalsha_calls(client) - before == 1
        stored = await client.hgetall(prefix + tid)
        assert stored["state"] == "failed" and stored["size"] == "5"
        assert stored["bytes_sent"] == "3" and stored["error_class"] == "ValueError"
        assert "secret123" not in stored["error_message"]
        assert 0 < await client.ttl(prefix + tid) <= ledger.max_age
        record = await ledger.get(tid)
        assert (record.method, record.path, record.state) == ("GET", "/small", "failed")
        assert record.ended_at is not None and record.ended_at >= record.started_at


async def test_a_dropped_connection_fails_one_round_trip_and_the_next_reconnects(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with RedisLedger(redis_url, prefix=prefix, begin_delay=0) as ledger:
        tid = await ledger.begin("GET", "/before")
        await ledger.finish(tid, "completed", 1)
        # Redis drops the ledger's write connection (the one whose last call was EVALSHA).
        killed = 0
        for entry in await client.client_list():
            if entry["cmd"] == "evalsha":
                killed += await client.client_kill_filter(_id=entry["id"])
        assert killed == 1
        outcomes = []
        tids = []
        for path in ("/during", "/after"):
            tid = await ledger.begin("GET", path)
            tids.append(tid)
            try:
                await asyncio.wait_for(ledger.finish(tid, "completed", 1), 5)
                outcomes.append("ok")
            except LedgerError:
                outcomes.append("failed")
        # The write that met the dropped connection went again on a new one.
        assert outcomes == ["ok", "ok"]
        for tid in tids:
            assert (await ledger.get(tid)).state == "completed"


async def test_a_call_sent_again_after_it_ran_counts_as_done() -> None:
    from sluicegate.ledger.redis import _as_asked

    assert _as_asked("begin", ("t",), 0) == 1
    assert _as_asked("finish", ("t", "completed"), [b"ended", b"completed"]) == [b"ok"]
    record = ("t", "GET", "/", "1.0", "", "failed")
    assert _as_asked("record", record, [b"ended", b"failed"]) == [b"ok"]
    # Ended some other way (another worker retired it): still an error for the caller.
    lapsed = [b"ended", b"interrupted"]
    assert _as_asked("finish", ("t", "completed"), lapsed) == lapsed


async def test_a_long_transfer_writes_its_begin_after_begin_delay(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with _Counted(redis_url, prefix=prefix, begin_delay=0.02) as ledger:
        tid = await ledger.begin("GET", "/big")
        assert not await client.exists(prefix + tid)
        await asyncio.sleep(0.2)
        assert await client.hget(prefix + tid, "state") == "streaming"
        await ledger.finish(tid, "completed", 5)
        assert ledger.pipelines == [["begin"], ["finish"]]


async def test_concurrent_transfers_share_round_trips(redis_url: str, prefix: str) -> None:
    async with _Counted(redis_url, prefix=prefix) as ledger:

        async def one() -> str:
            tid = await ledger.begin("GET", "/many")
            await asyncio.sleep(0)
            await ledger.finish(tid, "completed", 1)
            return tid

        tids = await asyncio.gather(*(one() for _ in range(200)))
        assert sum(map(len, ledger.pipelines)) == 400
        assert len(ledger.pipelines) <= 20  # in practice 1 or 2
        for tid in tids[:: len(tids) // 10]:
            assert (await ledger.get(tid)).state == "completed"


async def test_scripts_lost_by_redis_are_loaded_again(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with RedisLedger(redis_url, prefix=prefix) as ledger:
        await client.script_flush()
        tid = await ledger.begin("GET", "/after-flush")
        await ledger.finish(tid, "completed", 3)
        assert (await ledger.get(tid)).state == "completed"


async def test_a_finish_while_redis_is_down_fails_cleanly(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RedisLedger(redis_url, prefix=prefix) as ledger:
        tid = await ledger.begin("GET", "/down")

        async def down(ops: list[Any]) -> list[Any]:
            raise RedisConnectionError("Connection refused")

        monkeypatch.setattr(ledger, "_send", down)
        with pytest.raises(LedgerError, match="redis write failed"):
            await asyncio.wait_for(ledger.finish(tid, "completed", 1), 5)
        monkeypatch.undo()
        # Nothing hangs and the ledger goes on working.
        other = await ledger.begin("GET", "/up")
        await ledger.finish(other, "completed", 1)
        assert (await ledger.get(other)).state == "completed"


async def test_a_finish_fails_within_the_socket_timeout_when_redis_stops_answering(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """The ledger's own connection keeps the URL's ``socket_timeout``, as one deadline."""
    url = f"{redis_url}?socket_timeout=0.3"
    async with RedisLedger(url, prefix=prefix, begin_delay=0) as ledger:
        warm = await ledger.begin("GET", "/warm")
        await ledger.finish(warm, "completed", 0)  # the ledger's connection is open
        tid = await ledger.begin("GET", "/stuck")
        await client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        started = asyncio.get_running_loop().time()
        with pytest.raises(LedgerError):
            await ledger.finish(tid, "completed", 0)
        waited = asyncio.get_running_loop().time() - started
        assert waited < 1.4, f"the finish waited {waited:.2f} s, past two timeouts"
        await asyncio.sleep(1.6 - waited)  # Redis answers again
        again = await ledger.begin("GET", "/after")
        await ledger.finish(again, "completed", 0)
        assert (await ledger.get(again)).state == "completed"
