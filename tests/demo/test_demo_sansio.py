"""The demo's logic that needs no socket: the plan, the summaries, the formatting."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sluicegate.demo.plan import ARTICLE, SCENARIOS, Case, plan_cases
from sluicegate.demo.report import (
    RunSummary,
    format_recvs,
    pause_gap,
    print_table,
    result_text,
    summarize,
)
from sluicegate.demo.runner import Recv, proc_net_tcp_send_queue
from sluicegate.doctor.samples import Event, Sample, Trace
from sluicegate.errors import ConfigError

MiB = 1024 * 1024


def test_the_default_plan_is_short_and_bounded() -> None:
    cases = plan_cases()
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys)) == 2 * len(SCENARIOS) + 1
    slow = [c for c in cases if c.rate == 20 * MiB and not c.pause_for]
    fast = [c for c in cases if c.rate == 100 * MiB]
    assert all(c.count == 4 and c.chunk == 20 * MiB for c in slow if c.scenario != "leaky")
    assert all(c.window == 6.0 for c in fast)  # the 100 MiB/s runs cannot run away
    # The whole default plan reads for about a minute and a half at 10 MiB/s.
    assert sum(c.expected_seconds for c in cases) < 100


def test_full_is_the_articles_parameters() -> None:
    cases = plan_cases(full=True, pause=False)
    by_rate = {(c.scenario, c.rate_mib): c for c in cases}
    assert by_rate[("generator", 20)].count == 20 and by_rate[("generator", 20)].chunk == 20 * MiB
    assert (
        by_rate[("generator", 100)].chunk == 100 * MiB
        and by_rate[("generator", 100)].window is None
    )
    # The anti-pattern keeps its safety cap even in the full run.
    assert by_rate[("ignore-backpressure", 100)].cap == 1536 * MiB


def test_leaky_sends_the_same_bytes_as_small_messages() -> None:
    leaky = next(c for c in plan_cases(scenarios=["leaky"]) if c.rate_mib == 20)
    assert leaky.chunk == MiB and leaky.total == 4 * 20 * MiB
    assert "limit=" in leaky.path


def test_node_runs_sit_beside_python_runs() -> None:
    cases = plan_cases(scenarios=["wait"], servers=["python", "node"], pause=False)
    assert [c.server for c in cases] == ["python", "node", "python", "node"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"scenarios": ["nope"]}, "unknown scenario"),
        ({"servers": ["deno"]}, "unknown server"),
        ({"chunks": 0}, "chunks must be"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        plan_cases(**kwargs)  # type: ignore[arg-type]


def test_case_paths_and_safety_timeout() -> None:
    c = Case("ignore-backpressure", rate=20 * MiB, chunk=20 * MiB, count=4, cap=100 * MiB)
    assert c.path.startswith("/ignore-backpressure?") and "cap=104857600" in c.path
    assert c.expected_seconds == pytest.approx(8.0)  # 80 MiB read at 10 MiB/s
    assert Case("wait", 1, 1, 1, window=2.0, client_rate=1).expected_seconds == 1.0


def _trace() -> Trace:
    # Idle at 100 MiB, then the load adds 10, 30, then back; send queue sampled twice.
    rss = [100, 100, 100, 110, 130, 100]
    samples = [Sample(7, float(i), rss=r * MiB) for i, r in enumerate(rss)]
    samples[3].send_queue = 2 * MiB
    samples[4].send_queue = 3 * MiB
    return Trace(samples=samples, events=[Event(2.5, "load-start")], server_pid=7)


def test_summary_reads_idle_peak_and_queues_from_the_trace() -> None:
    case = Case("ignore-backpressure", rate=20 * MiB, chunk=20 * MiB, count=4)
    load = {
        "fetch": {"bytes": 80 * MiB, "duration": 8.2, "ttfb": 1.0, "complete": True},
        "server": {"produced": 80 * MiB, "backlog_peak": 40 * MiB, "times": [1, 2, 3, 4]},
    }
    s = summarize(case, _trace(), load)
    assert s.idle_rss == 100 * MiB and s.peak_above_idle == 30 * MiB
    assert s.send_queue_peak == 3 * MiB
    assert s.curve_t == [0.5, 1.5, 2.5] and s.curve_rss == [10.0, 30.0, 0.0]
    assert (s.bytes, s.complete, s.produced) == (80 * MiB, True, 80 * MiB)
    assert s.article == ARTICLE[("ignore-backpressure", 20)]
    assert result_text(s) == "complete"


def test_summary_of_an_empty_run_is_zeros_not_an_error() -> None:
    s = summarize(Case("wait", 1, 1, 1), Trace(), {}, problem="the server exited")
    assert s.peak_above_idle == 0 and s.send_queue_peak is None
    assert result_text(s) == "problem: the server exited"


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"stopped_by_window": True, "window": 6.0}, "client left at 6 s"),
        ({"server_stopped": "backlog reached the safety cap of 1536 MiB"}, "cut by the safety cap"),
        ({"complete": True, "produced": 100, "dropped": 25}, "25% dropped"),
        ({"error": "incomplete: closed early"}, "incomplete: closed early"),
        ({"error": "stalled"}, "incomplete: stalled"),
        ({}, "incomplete"),
    ],
)
def test_result_text(fields: dict[str, object], text: str) -> None:
    base: dict[str, object] = {"window": None, **fields}
    s = RunSummary("k", "wait", "python", 20, 1, 1, None, **base)  # type: ignore[arg-type]
    assert result_text(s) == text


def test_pause_gap_is_the_longest_quiet_spell() -> None:
    assert pause_gap([0.1, 0.2, 4.3, 4.4]) == pytest.approx(4.1)
    assert pause_gap([1.0]) is None


def test_recvs_print_like_curl_trace() -> None:
    # The article's two packets, byte for byte.
    text = format_recvs(
        [Recv(b"HTTP/1.1 200 OK\r\n\r\n", b"5\r\nHello\r\n"), Recv(b"", b"5\r\nWorld\r\n0\r\n\r\n")]
    )
    assert text.splitlines() == [
        "<= Recv header, 19 bytes (0x13)",
        "<= Recv data, 10 bytes (0xa)",
        "0000: 35 0d 0a 48 65 6c 6c 6f 0d 0a                    5..Hello..",
        "<= Recv data, 15 bytes (0xf)",
        "0000: 35 0d 0a 57 6f 72 6c 64 0d 0a 30 0d 0a 0d 0a     5..World..0....",
    ]


def test_proc_net_tcp_sums_the_established_sockets_of_the_port() -> None:
    text = "\n".join(
        [
            "  sl  local_address rem_address   st tx_queue rx_queue ...",
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000",  # LISTEN
            "   1: 0100007F:1F90 0100007F:D2A4 01 00100000:00000000 00:00000000",
            "   2: 0100007F:1F90 0100007F:D2A6 01 00000400:00000000 00:00000000",
            "   3: 0100007F:D2A4 0100007F:1F90 01 00000777:00000000 00:00000000",  # the client
            "   4: garbage",
        ]
    )
    assert proc_net_tcp_send_queue(text, 8080) == 0x100000 + 0x400


def test_the_table_has_a_row_per_run_and_the_articles_column() -> None:
    rows = [
        RunSummary("a", s, "python", 20, 1, 1, None, None, peak_above_idle=i * MiB, complete=True,
                   article=ARTICLE.get((s, 20)))
        for i, s in enumerate(SCENARIOS)
    ]  # fmt: skip
    out = io.StringIO()
    print_table(rows, Console(file=out, width=160), title="demo")
    text = out.getvalue()
    assert "article, Node" in text and "server" not in text.split("\n")[2]
    for s in SCENARIOS:
        assert s in text
    assert "~180 MB" in text
