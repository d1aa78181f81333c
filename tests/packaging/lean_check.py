"""Run inside a venv that has sluicegate without extras: what a plain install can do.

Prints one JSON line: the optional modules loaded, and what a StreamResponse served
in-process and a SQLite ledger did. Stdlib only (plus sluicegate), by design.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile

OPTIONAL = (
    "click",
    "h11",
    "httpx",
    "opentelemetry",
    "plotly",
    "prometheus_client",
    "psutil",
    "redis",
    "rich",
    "sqlite3",
    "uvicorn",
)


def loaded() -> list[str]:
    return sorted(m for m in sys.modules if m.partition(".")[0] in OPTIONAL)


async def serve_in_process() -> dict[str, object]:
    from sluicegate import StreamResponse

    async def numbers():  # type: ignore[no-untyped-def]
        for i in range(1000):
            yield f"{i}\n"

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/n", "headers": []}
    await StreamResponse(numbers(), media_type="text/plain")(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    return {
        "status": sent[0]["status"],
        "body_ok": body == "".join(f"{i}\n" for i in range(1000)).encode(),
        "ended": sent[-1].get("more_body") is False,
    }


async def sqlite_ledger() -> str:
    from sluicegate.ledger import SQLiteLedger

    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteLedger(f"{tmp}/t.db") as ledger:
            tid = await ledger.begin("GET", "/n", size=3)
            await ledger.finish(tid, "completed", 3)
            return (await ledger.get(tid)).state


def missing_extras() -> dict[str, str]:
    """What importing each exporter says without its extra."""
    said = {}
    for module in ("sluicegate.observe.otel", "sluicegate.observe.prometheus"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            said[module] = str(exc)
    return said


def main() -> None:
    import sluicegate

    after_import = loaded()
    public = [getattr(sluicegate, name) for name in sluicegate.__all__]  # all load

    served = asyncio.run(serve_in_process())
    after_serve = loaded()
    state = asyncio.run(sqlite_ledger())
    import sluicegate.observe.outcome

    exporters = missing_extras()
    print(
        json.dumps(
            {
                "version": sluicegate.__version__,
                "file": sluicegate.__file__,
                "after_import": after_import,
                "after_serve": after_serve,
                "served": served,
                "ledger_state": state,
                "public_names": len(public),
                "exporters": exporters,
                "doctor_error": sluicegate.DoctorError.__module__,
            }
        )
    )


if __name__ == "__main__":
    main()
