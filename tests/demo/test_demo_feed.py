"""The demo's live feed: its app's bad input, its figures (sans-IO), and a small run of
each policy under the doctor with real sockets (40 subscribers, 4 of them slow)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from sluicegate.demo.app import app
from sluicegate.demo.feedreport import feed_html, print_feed_table, summarize_feed
from sluicegate.demo.livefeed import FEED_POLICIES, LIMIT, LiveFeed, feed_app
from sluicegate.demo.plan import FeedCase, plan_feed_cases
from sluicegate.demo.runner import run_case
from sluicegate.doctor.samples import Event, Sample, Trace
from sluicegate.errors import ConfigError
from tests.asgi import call

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "words"),
    [
        ("POST", "/feed/start", "policy=nope", 400, "policy must be one of"),
        ("POST", "/feed/start", "policy=wait&rate=fast", 400, "must be numbers"),
        ("POST", "/feed/start", "policy=wait&size=100000000", 400, "size <="),
        ("POST", "/feed/start", "policy=wait&seconds=1e9", 400, "seconds <="),
        ("GET", "/feed/start", "policy=wait", 405, "POST"),
        ("GET", "/feed/latest", "", 404, "no feed at"),
    ],
)
async def test_bad_requests_get_problem_json(
    method: str, path: str, query: str, status: int, words: str
) -> None:
    ex = await call(app, method, path, query=query)
    assert ex.status == status
    assert ex.headers["content-type"] == "application/problem+json"
    assert words in json.loads(ex.body)["detail"]


async def test_stats_and_a_second_start_conflicts() -> None:
    feed = LiveFeed()

    async def one(method: str, path: str, query: str = "") -> tuple[int, dict[str, object]]:
        async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
            q = dict(p.split("=") for p in query.split("&") if p)
            await feed_app(scope, receive, send, q, feed)

        ex = await call(asgi, method, path, query=query)
        return ex.status, json.loads(ex.body)

    status, doc = await one("POST", "/feed/start", "policy=drop_oldest&rate=100&seconds=1")
    assert status == 202 and doc["running"] is True
    status, _ = await one("POST", "/feed/start", "policy=wait&rate=100&seconds=1")
    assert status == 409
    assert feed.task is not None
    await feed.task
    status, doc = await one("GET", "/feed/stats")
    assert doc["published"] == doc["planned"] == 100 and doc["running"] is False
    assert doc["subscribers"] == {p: 0 for p in FEED_POLICIES}


def test_plan_refuses_unknown_policies_and_sizes() -> None:
    with pytest.raises(ConfigError, match="unknown policy 'latest'"):
        plan_feed_cases(["latest"])
    with pytest.raises(ConfigError, match="subscribers"):
        plan_feed_cases(subscribers=10**6)


def _load(policy: str) -> dict[str, object]:
    return {
        "swarm": {
            "classes": [
                {"label": "fast", "subscribers": 9, "events": 360, "reconnects": 0,
                 "latency_p50": 0.01, "latency_p99": 0.05},
                {"label": "slow=8192", "subscribers": 1, "events": 12, "reconnects": 1,
                 "latency_p50": 2.0, "latency_p99": 3.0},
            ]
        },
        "server": {"published": 40, "behind": 0.0, "dropped": 20, "cut": 1, "policy": policy},
    }  # fmt: skip


def test_figures_table_and_html() -> None:
    trace = Trace(
        samples=[Sample(1, float(i), rss=(100 + 5 * (i > 2)) * MiB) for i in range(6)],
        events=[Event(2.5, "load-start")],
    )
    summaries = [summarize_feed(FeedCase(p, 10), trace, _load(p)) for p in FEED_POLICIES]
    s = summaries[1]
    assert (s.fast_delivered, s.fast_offered, s.slow_delivered, s.slow_offered) == (
        360,
        360,
        12,
        40,
    )
    assert s.peak_above_idle == 5 * MiB and s.curve_rss and s.dropped == 20 and s.cut == 1
    out = io.StringIO()
    print_feed_table(summaries, Console(file=out, width=200), title="feed")
    text = out.getvalue()
    assert "360 / 360 (100 %)" in text and "12 / 40 (30 %)" in text and "20 dropped" in text
    assert all(p in text for p in FEED_POLICIES)
    page = feed_html(summaries, title="Live feed", note="n")
    assert "runs/python-feed-disconnect/report.html" in page and "Server RSS above idle" in page


@pytest.mark.slow
def test_each_policy_under_the_doctor(tmp_path: Path) -> None:
    runs = {}
    for policy in FEED_POLICIES:
        case = FeedCase(policy, subscribers=40, seconds=3.0)
        run = run_case(case, tmp_path / policy, idle=0.3)
        runs[policy] = summarize_feed(case, run.trace, run.load, run.problem)
    for policy, s in runs.items():
        assert s.problem is None, (policy, s.problem)
        assert s.curve_rss and s.idle_rss > 0
        # Memory: each subscriber's 64 KiB, plus connections; generous for a shared machine.
        assert s.peak_above_idle < 40 * LIMIT + 60 * MiB, (policy, s.peak_above_idle)
    wait, drop, cut = runs["wait"], runs["drop_oldest"], runs["disconnect"]
    # wait: the slow subscribers hold the publisher back, so everyone falls behind.
    assert wait.behind > 0.5 or wait.published < wait.events, wait
    # The broadcast's policies keep the fast subscribers whole and live.
    for s in (drop, cut):
        assert s.published == s.events and s.fast_delivered == s.fast_offered, s
    assert drop.dropped > 0 and cut.cut > 0


@pytest.mark.slow
def test_run_demo_writes_the_feed_section(tmp_path: Path) -> None:
    from sluicegate.demo.cli import FEED_TITLE, run_demo

    buffer = io.StringIO()
    result = run_demo(
        [], tmp_path, console=Console(file=buffer, width=200), title="t", idle=0.3,
        hello=False, png=False, feed=[FeedCase("drop_oldest", subscribers=20, seconds=2.0)],
    )  # fmt: skip
    assert [s.policy for s in result.feed] == ["drop_oldest"]
    assert result.feed[0].problem is None and result.feed[0].published == 20
    assert FEED_TITLE in buffer.getvalue()
    doc = json.loads((tmp_path / "figures.json").read_text())
    assert doc["live_feed"][0]["policy"] == "drop_oldest" and doc["live_feed"][0]["curve_rss"]
    page = (tmp_path / "index.html").read_text()
    assert FEED_TITLE in page and "runs/python-feed-drop_oldest/report.html" in page
    assert (tmp_path / "runs" / "python-feed-drop_oldest" / "report.html").is_file()
