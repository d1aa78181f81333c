"""The trace model: probe records in, report.json out and back."""

from __future__ import annotations

import json
from pathlib import Path

from sluicegate.doctor.samples import (
    Event,
    ProcessInfo,
    Sample,
    StackSample,
    Trace,
    read_probe_dir,
    read_records,
    sample_from_record,
)


def full_trace() -> Trace:
    return Trace(
        samples=[
            Sample(pid=2, t=2.0, rss=5, cpu=0.5, loop_delay_ms=1.5, gc_ms=(1.0, 0.0, 2.0)),
            Sample(pid=1, t=1.0, send_queue=7, streams={"active_streams": 3.0}),
        ],
        stacks=[StackSample(1, 1.5, 60.0, (("a.py", 3, "f"),))],
        processes={1: ProcessInfo(pid=1, ppid=0, argv=("python", "app.py"), started=0.5)},
        events=[Event(0.1, "server-start", "1"), Event(3.0, "server-exit", "0")],
        command=["python", "app.py"],
        load_command="curl x",
        port=8000,
        server_pid=1,
        errors=["probe 1: boom"],
    )


def test_json_round_trip() -> None:
    trace = full_trace()
    again = Trace.from_json(trace.to_json())
    assert again == trace
    assert again.samples[0].gc_total_ms == 3.0
    assert again.samples[1].stream("active_streams") == 3.0
    assert again.samples[0].stream("active_streams") is None


def test_unmeasured_fields_are_left_out_of_json() -> None:
    record = json.loads(Trace(samples=[Sample(pid=1, t=0.0, rss=1)]).to_json())["samples"][0]
    assert "send_queue" not in record and record["rss"] == 1


def test_grouping_and_start() -> None:
    trace = full_trace()
    assert trace.pids == [2, 1]
    assert [s.t for s in trace.by_pid()[1]] == [1.0]
    assert trace.start == 0.1
    assert trace.event("server-exit") == Event(3.0, "server-exit", "0")
    assert trace.event("nope") is None
    assert Trace().start == 0.0


def test_probe_records_and_a_torn_line(tmp_path: Path) -> None:
    (tmp_path / "10.jsonl").write_text(
        '{"type":"meta","pid":10,"ppid":1,"argv":["x"],"t":5.0,"interval":0.02}\n'
        '{"type":"sample","pid":10,"t":6.0,"rss":100,"gc_ms":[0,0,1],"future_field":1}\n'
        '{"type":"stack","pid":10,"t":6.5,"blocked_ms":70,"frames":[["a.py",1,"f"]]}\n'
        '{"type":"error","pid":10,"error":"ValueError()"}\n'
        '{"type":"sample","pid":10,"t":5.5,"rss":90}\n'
        '{"type":"sample","pid":10,"t":7'
    )
    (tmp_path / "11.jsonl").write_text('{"type":"sample","pid":11,"t":5.7}\n')
    trace = read_probe_dir(tmp_path)
    assert [s.t for s in trace.samples] == [5.5, 5.7, 6.0]  # sorted by time
    assert trace.processes[10].interval == 0.02
    assert trace.stacks[0].frames == (("a.py", 1, "f"),)
    assert trace.errors[0] == "probe 10: ValueError()"
    assert "unreadable" in trace.errors[1]


def test_record_helpers() -> None:
    s = sample_from_record({"pid": 1, "t": 0.0, "gc_ms": [1, 2, 3]})
    assert s.gc_ms == (1.0, 2.0, 3.0)
    trace = Trace()
    read_records(["", "not json", '{"type":"unknown"}'], trace)
    assert len(trace.errors) == 1 and not trace.samples
