"""A worker for the browser tests: an EventSource page and its feed, on uvicorn.

Run as ``python browser_app.py PORT REPORT BACKEND TOPIC [PUBLISH]``:

* ``/``: the page. It shows each ``tick`` event's number as a list item, and posts
  what it shows to ``/report`` after every event and every (re)connection (so the
  test sees what a person would).
* ``/events``: ``EventStream`` of ``TOPIC`` (``retry: 300`` first, so the browser
  comes back quickly). Every request's ``Last-Event-ID`` is appended to ``REPORT``.
* ``/report``: appends the page's JSON to ``REPORT``, one line each.

``BACKEND`` is ``memory`` or a ``redis://`` URL. With ``PUBLISH`` (a count), this
worker publishes ticks 1..PUBLISH itself, 25 a second, from its first subscriber on.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn

from sluicegate.events import Broadcast, EventStream, graceful_uvicorn

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>live events</title></head>
<body><ol id="log"></ol>
<script>
const log = document.getElementById("log");
const source = new EventSource("/events");
let opens = 0;
source.onopen = () => { opens += 1; report("open"); };
function report(kind) {
  const shown = Array.from(log.children, li => Number(li.textContent));
  fetch("/report", {method: "POST", body: JSON.stringify({kind, shown, opens})});
}
source.addEventListener("tick", (e) => {
  const li = document.createElement("li");
  li.textContent = JSON.parse(e.data).n;
  log.appendChild(li);
  report("tick");
});
source.addEventListener("resync", () => report("resync"));
</script></body></html>
"""


def make_app(report: Path, backend: str, topic: str, publish: int) -> Any:
    broadcast = Broadcast([topic], backend=None if backend == "memory" else backend)
    publisher: list[asyncio.Task[None]] = []

    async def ticks() -> None:
        for _ in range(1000):  # start once the first subscriber is in (10 s at most)
            if broadcast.subscribers(topic):
                break
            await asyncio.sleep(0.01)
        for n in range(1, publish + 1):
            await broadcast.publish(topic, {"n": n}, event="tick")
            await asyncio.sleep(0.04)

    def record(line: dict[str, Any]) -> None:
        with report.open("a") as out:
            out.write(json.dumps(line) + "\n")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/events":
            headers = dict(scope["headers"])
            record(
                {
                    "request": "events",
                    "worker": scope["server"][1],
                    "last_event_id": _text(headers.get(b"last-event-id")),
                }
            )
            if publish and not publisher:
                publisher.append(asyncio.create_task(ticks()))
            await EventStream(broadcast.feed(topic), retry=300)(scope, receive, send)
            return
        if path == "/report":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            record(json.loads(body))
            await _send(send, 204, b"", "text/plain")
            return
        await _send(send, 200, PAGE, "text/html; charset=utf-8")

    return app


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


async def _send(send: Any, status: int, body: bytes, media_type: str) -> None:
    headers = [(b"content-type", media_type.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    port, report, backend, topic = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    publish = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    config = uvicorn.Config(
        make_app(report, backend, topic, publish),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    graceful_uvicorn(uvicorn.Server(config), retry=300).run()


if __name__ == "__main__":
    main()
