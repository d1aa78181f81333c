"""A worker that records transfers and then waits to be killed: run by the kill -9 tests.

Usage: ``python ledger_victim.py sqlite PATH`` or ``python ledger_victim.py redis URL PREFIX``.
It begins three transfers, completes the first, flushes, prints one JSON line with the ids
and sleeps (at most a minute, so a forgotten victim still ends).

``python ledger_victim.py sqlite-journal PATH`` completes one transfer and does not flush:
its record is in the journal only (nothing folds it for an hour) when the line is printed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from sluicegate.ledger import Ledger, SQLiteLedger, digest_of

BODY = b"the completed body"


async def main(argv: list[str]) -> None:
    ledger: Ledger
    if argv[0] == "sqlite-journal":
        ledger = SQLiteLedger(argv[1], fold_delay=3600, commit_delay=3600)
        await ledger.open()
        done = await ledger.begin("GET", "/done.bin", size=len(BODY))
        await ledger.finish(done, "completed", len(BODY), digest=digest_of(BODY))
        print(json.dumps({"done": done, "live": []}), flush=True)
        await asyncio.sleep(60)
        return
    if argv[0] == "sqlite":
        ledger = SQLiteLedger(argv[1], heartbeat_interval=0.2, stale_after=30.0)
    else:
        from sluicegate.ledger.redis import RedisLedger

        ledger = RedisLedger(argv[1], prefix=argv[2], heartbeat_timeout=0.6)
    await ledger.open()
    done = await ledger.begin("GET", "/done.bin", size=len(BODY))
    await ledger.progress(done, 5)
    await ledger.finish(done, "completed", len(BODY), digest=digest_of(BODY))
    live = [await ledger.begin("GET", f"/live/{i}", size=1000) for i in range(2)]
    for tid in live:
        await ledger.progress(tid, 300)
    await ledger.flush()
    print(json.dumps({"done": done, "live": live}), flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
