"""A real browser: headless Chromium's EventSource through a cut and a worker change.

The page lists every ``tick`` it receives and reports the list after each one; a
proxy in front of the workers plays the network (cut every connection) and the load
balancer (send the next connection to another worker). The browser reconnects on
its own, sends ``Last-Event-ID``, and must show every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_support import Proxy

from sluicegate.cli.browser import find_chromium, headless_args
from sluicegate.events import Broadcast
from tests.redis_server import free_port
from tests.servers import stop, wait_for_port

CHROMIUM = find_chromium()
APP = Path(__file__).with_name("browser_app.py")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)"),
]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Workers and browsers started by a test; each ended by its pid (a browser with
    its process group, so its renderers go too)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            if proc.args[0] == CHROMIUM:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            else:
                stop(proc, grace=5)
        proc.communicate(timeout=10)


def worker(
    started: list[subprocess.Popen[str]], report: Path, backend: str, topic: str, publish: int = 0
) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(APP), str(port), str(report), backend, topic, str(publish)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    started.append(proc)
    wait_for_port(proc, port, "the browser-test worker")
    return proc, port


def browse(started: list[subprocess.Popen[str]], profile: Path, url: str) -> None:
    assert CHROMIUM is not None
    started.append(
        subprocess.Popen(
            [*headless_args(CHROMIUM, profile), url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    )


def lines(report: Path) -> list[dict[str, Any]]:
    if not report.exists():
        return []
    return [json.loads(line) for line in report.read_text().splitlines() if line.strip()]


def shown(report: Path) -> list[int]:
    """What the page showed at its latest report."""
    pages = [line for line in lines(report) if line.get("kind") == "tick"]
    return pages[-1]["shown"] if pages else []


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_cut_connection_resumes_and_the_page_shows_every_event_once_in_order(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    report = tmp_path / "report.jsonl"
    _, port = worker(processes, report, "memory", "ticks", publish=80)
    proxy = Proxy(port)
    try:
        browse(processes, tmp_path / "profile", f"http://127.0.0.1:{proxy.port}/")
        wait_until(lambda: len(shown(report)) >= 15, "15 events on the page")
        assert proxy.cut() >= 1
        wait_until(lambda: len(shown(report)) >= 40, "40 events on the page")
        assert proxy.cut() >= 1
        wait_until(lambda: len(shown(report)) >= 80, "all 80 events on the page")
    finally:
        proxy.close()
    assert shown(report) == list(range(1, 81))
    requests = [line for line in lines(report) if line.get("request") == "events"]
    assert len(requests) >= 3  # the first, and one after each cut
    assert requests[0]["last_event_id"] is None
    assert all(r["last_event_id"] for r in requests[1:])  # the browser sent its id


def test_on_redis_a_restart_moves_the_browser_to_a_second_worker_without_loss(
    tmp_path: Path, processes: list[subprocess.Popen[str]], redis_url: str
) -> None:
    report = tmp_path / "report.jsonl"
    topic = f"browser-{time.monotonic_ns()}"
    first, port_a = worker(processes, report, redis_url, topic)
    _, port_b = worker(processes, report, redis_url, topic)
    proxy = Proxy(port_a)
    total = 80

    async def publish() -> None:
        async with Broadcast([topic], backend=redis_url) as broadcast:
            for n in range(1, total + 1):
                await broadcast.publish(topic, {"n": n}, event="tick")
                await asyncio.sleep(0.04)

    publisher = threading.Thread(target=asyncio.run, args=(publish(),), daemon=True)
    try:
        browse(processes, tmp_path / "profile", f"http://127.0.0.1:{proxy.port}/")
        # Connected (onopen: the stream's head went out after it subscribed).
        wait_until(
            lambda: any(line.get("kind") == "open" for line in lines(report)),
            "the page to subscribe",
        )
        publisher.start()
        wait_until(lambda: len(shown(report)) >= 20, "20 events on the page")
        # The restart: new connections go to B; A shuts down (a final event, a retry hint).
        proxy.target = port_b
        first.send_signal(signal.SIGTERM)
        wait_until(lambda: len(shown(report)) >= total, f"all {total} events on the page")
    finally:
        proxy.close()
        publisher.join(30)
    assert first.wait(10) in (0, -signal.SIGTERM)
    assert shown(report) == list(range(1, total + 1))
    requests = [line for line in lines(report) if line.get("request") == "events"]
    assert requests[0]["worker"] == port_a
    assert any(r["worker"] == port_b and r["last_event_id"] for r in requests[1:])
