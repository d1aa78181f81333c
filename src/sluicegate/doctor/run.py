"""Run a server with the probe injected, put it under load, stop it, collect the trace.

:func:`run_doctor` is the orchestration behind ``sluicegate doctor``:

1. start the server command with ``PYTHONPATH`` prefixed by the directory holding the
   probe's ``sitecustomize.py`` (the old ``PYTHONPATH`` is kept, an existing
   ``sitecustomize`` is chained), in its own session so terminal signals reach only us;
2. watch the LISTEN sockets of its process tree (psutil) until it opens a port;
3. run the ``--on-port`` command with ``{port}`` and ``$PORT`` filled in, between two
   idle periods, so the trace shows the server before, under and after load;
4. stop the server with SIGINT (or ``stop_signal``), then SIGKILL each remaining pid
   of its tree after ``grace`` seconds; read the samples every process wrote.

Every problem (the server exits early, never opens a port, the load command fails)
ends the run cleanly and is returned as a one-line :attr:`RunResult.problem`, with
whatever was sampled until then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from sluicegate.doctor import probe
from sluicegate.doctor.samples import Event, Trace, read_probe_dir

#: Directory whose ``sitecustomize.py`` starts the probe in every Python process.
SITECUSTOMIZE_DIR = Path(__file__).resolve().parent / "_sitecustomize"

_POLL = 0.05


@dataclass(slots=True)
class DoctorConfig:
    """What to run and how; the CLI fills it from its options."""

    command: Sequence[str]
    #: shell command to run once the server listens; ``{port}`` and ``$PORT`` are filled in
    on_port: str | None = None
    #: stop after this many seconds (the load command is stopped too)
    duration: float | None = None
    interval: float = 0.01
    net_interval: float = 0.1
    port_timeout: float = 15.0
    #: the port to wait for when the server opens several (default: the lowest)
    port: int | None = None
    #: seconds between the stop signal and SIGKILL
    grace: float = 5.0
    #: idle seconds recorded before and after the load command
    idle: float = 1.0
    stop_signal: int = signal.SIGINT
    #: False runs the same scenario without the probe (to measure its overhead)
    probe: bool = True
    #: where the probes write; a temporary directory when ``None``
    samples_dir: Path | None = None


@dataclass(slots=True)
class RunResult:
    """The trace, and what went wrong if something did."""

    trace: Trace
    #: a one-line description of a failure, or ``None``
    problem: str | None = None
    server_exit: int | None = None
    load_exit: int | None = None
    samples_dir: Path | None = None
    pids_killed: list[int] = field(default_factory=list)


def probe_env(base: dict[str, str], config: DoctorConfig, samples_dir: Path) -> dict[str, str]:
    """The server's environment: ``base`` plus the probe's injection when enabled."""
    env = dict(base)
    if not config.probe:
        return env
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(SITECUSTOMIZE_DIR) + (os.pathsep + old if old else "")
    env[probe.ENV_OUT] = str(samples_dir)
    env[probe.ENV_INTERVAL] = repr(config.interval)
    env[probe.ENV_NET_INTERVAL] = repr(config.net_interval)
    return env


def fill_port(command: str, port: int) -> str:
    """Replace ``{port}`` in the load command (``$PORT`` is set in its environment)."""
    return command.replace("{port}", str(port))


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def listening_ports(pid: int) -> list[int]:
    """The TCP ports the processes of ``pid``'s tree listen on, lowest first."""
    ports: set[int] = set()
    for proc in _tree(pid):
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr)
    return sorted(ports)


def listening_port(pid: int, wanted: int | None = None) -> int | None:
    """``wanted`` once ``pid``'s tree listens on it; without ``wanted``, its lowest port."""
    ports = listening_ports(pid)
    if wanted is not None:
        return wanted if wanted in ports else None
    return ports[0] if ports else None


class _Clock:
    def __init__(self, trace: Trace, on_event: Callable[[Event], None] | None) -> None:
        self.trace = trace
        self.on_event = on_event

    def mark(self, kind: str, detail: str = "") -> None:
        event = Event(time.time(), kind, detail)
        self.trace.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


def _stop(proc: subprocess.Popen[bytes], sig: int, grace: float) -> tuple[int | None, list[int]]:
    """Stop ``proc`` with ``sig``, then SIGKILL each pid of its tree still alive."""
    tree = _tree(proc.pid)
    killed: list[int] = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _, alive = psutil.wait_procs(tree, timeout=0.5 if proc.poll() is not None else 0)
    for p in alive:
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.Error:
            pass
    try:
        code = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        code = None
    return code, killed


def _sleep_while_alive(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Sleep up to ``seconds``; False as soon as ``proc`` exits."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        time.sleep(min(_POLL, max(0.0, end - time.monotonic())))
    return proc.poll() is None


def run_doctor(
    config: DoctorConfig, *, on_event: Callable[[Event], None] | None = None
) -> RunResult:
    """Run the scenario in ``config`` and return the trace (see the module docstring)."""
    samples_dir = config.samples_dir or Path(tempfile.mkdtemp(prefix="sluicegate-doctor-"))
    samples_dir.mkdir(parents=True, exist_ok=True)
    trace = Trace(command=list(config.command), load_command=config.on_port)
    result = RunResult(trace=trace, samples_dir=samples_dir)
    clock = _Clock(trace, on_event)
    try:
        server = subprocess.Popen(
            list(config.command),
            env=probe_env(dict(os.environ), config, samples_dir),
            start_new_session=True,
        )
    except OSError as exc:
        result.problem = f"cannot start the server command: {exc.strerror or exc}"
        return result
    trace.server_pid = server.pid
    clock.mark("server-start", str(server.pid))
    load: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        result.problem = _wait_for_port(server, config, trace, clock)
        if result.problem is None and trace.port is not None:
            load, result.problem = _apply_load(server, config, trace, clock, started, result)
    except KeyboardInterrupt:
        clock.mark("interrupted")
        # Without a load command, Ctrl-C is how a sampling session ends.
        if config.on_port is not None or trace.port is None:
            result.problem = "interrupted"
    finally:
        if load is not None and load.poll() is None:
            code, _ = _stop(load, signal.SIGTERM, 2.0)
            result.load_exit = code
        early = server.poll()
        result.server_exit, result.pids_killed = _stop(server, config.stop_signal, config.grace)
        clock.mark("server-exit", str(result.server_exit))
        if early not in (None, 0) and result.problem is None and config.duration is None:
            result.problem = f"the server exited with code {early}"
    read_probe_dir(samples_dir, trace)
    if config.probe and not trace.samples and result.problem is None:
        result.problem = (
            "no samples were recorded: is the server command a Python program "
            "(sitecustomize may be disabled by -S or -I)?"
        )
    return result


def _wait_for_port(
    server: subprocess.Popen[bytes], config: DoctorConfig, trace: Trace, clock: _Clock
) -> str | None:
    deadline = time.monotonic() + config.port_timeout
    while True:
        code = server.poll()
        if code is not None:
            return f"the server exited with code {code} before it opened a port"
        port = listening_port(server.pid, config.port)
        if port is not None:
            trace.port = port
            clock.mark("port-open", str(port))
            return None
        if time.monotonic() >= deadline:
            which = "no port" if config.port is None else f"no port {config.port}"
            return (
                f"the server opened {which} within {config.port_timeout:g} s (see --port-timeout)"
            )
        time.sleep(_POLL)


def _apply_load(
    server: subprocess.Popen[bytes],
    config: DoctorConfig,
    trace: Trace,
    clock: _Clock,
    started: float,
    result: RunResult,
) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    """Idle, run the load command (or just wait), idle; return a problem if any."""
    assert trace.port is not None
    deadline = None if config.duration is None else started + config.duration
    if config.on_port is None:
        # No load command: sample until --duration, the server exits, or Ctrl-C.
        while deadline is None or time.monotonic() < deadline:
            if not _sleep_while_alive(server, _POLL * 4):
                return None, None
        return None, None
    if not _sleep_while_alive(server, config.idle):
        return None, f"the server exited with code {server.poll()} before the load"
    env = dict(os.environ, PORT=str(trace.port))
    command = fill_port(config.on_port, trace.port)
    clock.mark("load-start", command)
    try:
        load = subprocess.Popen(command, shell=True, env=env, start_new_session=True)
    except OSError as exc:
        return None, f"cannot start the --on-port command: {exc}"
    while load.poll() is None:
        if server.poll() is not None:
            clock.mark("load-end", "server exited")
            return load, f"the server exited with code {server.poll()} during the load"
        if deadline is not None and time.monotonic() >= deadline:
            clock.mark("load-end", "duration reached")
            return load, None
        time.sleep(_POLL)
    result.load_exit = load.returncode
    clock.mark("load-end", str(load.returncode))
    _sleep_while_alive(server, config.idle)
    if load.returncode != 0:
        return load, f"the --on-port command exited with code {load.returncode}"
    return load, None
