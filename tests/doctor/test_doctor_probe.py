"""The probe, run in child processes (it hooks asyncio, gc and fork process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sluicegate.doctor.run import SITECUSTOMIZE_DIR, DoctorConfig, probe_env
from sluicegate.doctor.samples import Trace, read_probe_dir

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def run_script(code: str, env: dict[str, str] | None = None, timeout: float = 20) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_loop_delay_stack_gc_and_tasks(tmp_path: Path) -> None:
    run_script(
        f"""
        import asyncio, gc, time
        from sluicegate.doctor import probe
        probe.install({str(tmp_path)!r}, interval=0.01, net_interval=0.05)

        def blocking_call():
            time.sleep(0.3)

        async def main():
            await asyncio.sleep(0.1)
            blocking_call()
            junk = [[i] for i in range(200000)]
            gc.collect()
            tasks = [asyncio.create_task(asyncio.sleep(1)) for _ in range(20)]
            await asyncio.sleep(0.3)
            for t in tasks:
                t.cancel()

        asyncio.run(main())
        """
    )
    trace = read_probe_dir(tmp_path)
    assert len(trace.pids) == 1
    pid = trace.pids[0]
    assert trace.processes[pid].interval == pytest.approx(0.01)
    delays = [s.loop_delay_ms for s in trace.samples if s.loop_delay_ms is not None]
    assert max(delays) >= 250
    assert min(delays) < 10  # the idle loop answers pings at once
    assert any(st.frames[-1][2] == "blocking_call" for st in trace.stacks)
    assert sum(s.gc_ms[2] for s in trace.samples) > 0
    assert max(s.tasks or 0 for s in trace.samples) >= 21
    assert all(s.rss and s.rss > 1 << 20 for s in trace.samples)
    assert any(s.fds for s in trace.samples)
    assert not trace.errors


def test_kernel_send_queue_of_an_unread_socket(tmp_path: Path) -> None:
    run_script(
        f"""
        import socket, time
        from sluicegate.doctor import probe
        listener = socket.create_server(("127.0.0.1", 0))
        reader = socket.create_connection(listener.getsockname())
        writer, _ = listener.accept()
        writer.setblocking(False)
        try:
            while True:
                writer.send(b"x" * 65536)  # nobody reads: fill both buffers
        except BlockingIOError:
            pass
        probe.install({str(tmp_path)!r}, interval=0.02, net_interval=0.02)
        time.sleep(0.3)
        """
    )
    trace = read_probe_dir(tmp_path)
    net = [s for s in trace.samples if s.send_queue is not None]
    assert net
    assert max(s.send_queue or 0 for s in net) > 64 * 1024
    assert max(s.recv_queue or 0 for s in net) > 0
    assert max(s.connections or 0 for s in net) == 2
    assert max(s.send_queue_sockets or 0 for s in net) == 1
    assert any(s.tcp_mem_pages for s in net)


def test_uvloop_loop_found_when_installed_inside_it(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    run_script(
        f"""
        import asyncio, time, uvloop
        from sluicegate.doctor import probe

        async def main():
            probe.install({str(tmp_path)!r})
            await asyncio.sleep(0.05)
            time.sleep(0.2)
            await asyncio.sleep(0.05)

        uvloop.run(main())
        """
    )
    trace = read_probe_dir(tmp_path)
    assert max(s.loop_delay_ms or 0 for s in trace.samples) >= 150


def test_sitecustomize_injects_and_chains(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    marker = tmp_path / "chained"
    (other / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ok')\n")
    base = dict(os.environ, PYTHONPATH=str(other))
    env = probe_env(base, DoctorConfig(command=[]), tmp_path / "out")
    assert env["PYTHONPATH"] == f"{SITECUSTOMIZE_DIR}{os.pathsep}{other}"
    out = run_script(
        """
        import os, sys
        print(os.getpid(), "_sluicegate_doctor_probe" in sys.modules, "sluicegate" in sys.modules)
        """,
        env=env,
    )
    pid, probed, imported = out.split()
    assert marker.read_text() == "ok"
    assert probed == "True"
    assert imported == "False"  # the probe loads by path: the server's imports stay its own
    trace = read_probe_dir(tmp_path / "out")
    assert trace.pids == [int(pid)]


def test_no_probe_config_leaves_environment_alone(tmp_path: Path) -> None:
    base = {"PYTHONPATH": "/x"}
    env = probe_env(base, DoctorConfig(command=[], probe=False), tmp_path)
    assert env == base


def test_forked_child_writes_its_own_file(tmp_path: Path) -> None:
    out = run_script(
        f"""
        import os, time
        from sluicegate.doctor import probe
        p = probe.install({str(tmp_path)!r})
        assert probe.install() is p  # idempotent
        time.sleep(0.05)
        child = os.fork()
        if child == 0:
            time.sleep(0.2)
            probe.current().stop()
            os._exit(0)
        os.waitpid(child, 0)
        print(child)
        """
    )
    child = int(out)
    files = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert f"{child}.jsonl" in files and len(files) == 2
    records = [json.loads(line) for line in (tmp_path / f"{child}.jsonl").open()]
    assert {r["pid"] for r in records} == {child}  # no copy of the parent's buffer
    assert sum(1 for r in records if r["type"] == "meta") == 1
    assert isinstance(read_probe_dir(tmp_path), Trace)


def test_a_loop_that_pauses_between_runs_is_not_blocked(tmp_path: Path) -> None:
    run_script(
        f"""
        import asyncio, time
        from sluicegate.doctor import probe
        probe.install({str(tmp_path)!r})
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0.1))
        time.sleep(0.4)  # the loop is not running: that is not a delay
        loop.run_until_complete(asyncio.sleep(0.1))
        loop.close()
        """
    )
    trace = read_probe_dir(tmp_path)
    delays = [s.loop_delay_ms for s in trace.samples if s.loop_delay_ms is not None]
    assert len(delays) >= 10
    assert max(delays) < 50
    assert not trace.stacks


def test_uvloop_imported_first_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    run_script(
        f"""
        import uvloop
        from sluicegate.doctor import probe
        probe.install({str(tmp_path)!r})
        """
    )
    trace = read_probe_dir(tmp_path)
    assert any("uvloop was imported before install()" in e for e in trace.errors)


def test_stack_caveats_are_sampled_with_the_streams(tmp_path: Path) -> None:
    run_script(
        f"""
        import time
        from sluicegate.engine import metrics
        from sluicegate.engine import caveats
        from sluicegate.doctor import probe
        probe.install({str(tmp_path)!r}, interval=0.01, net_interval=0.02)
        caveats.warn_once("base-http-middleware", "under BaseHTTPMiddleware")
        time.sleep(0.3)
        """
    )
    trace = read_probe_dir(tmp_path)
    counts = [s.stream("caveat:base-http-middleware") for s in trace.samples]
    assert 1 in counts
