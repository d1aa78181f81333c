"""Slowloris (``slowhttptest -H``) and slow body (``-B``) against ``sluicegate serve``.

Run ``python -m benchmarks.attack.slowloris`` (127.0.0.1 only, about 3 minutes). Each
run starts a server, lets slowhttptest open its connections (500 by default, for
30 s), and samples the server's established connections every 0.25 s with psutil,
keyed by the client's port, so that it knows how long the server held each one.
Meanwhile a normal keep-alive client sends ``GET /hello`` on one connection once a
second: it must never fail. Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.bench_slowread import free_port, server

#: (name, slowhttptest mode, server flags; None: plain uvicorn, the same app)
RUNS: list[tuple[str, str, list[str] | None]] = [
    ("serve, defaults (head 20 s)", "-H", []),
    ("serve --header-timeout 5s", "-H", ["--header-timeout", "5s"]),
    ("plain uvicorn", "-H", None),
    ("serve, defaults (body stall 30 s)", "-B", []),
    ("serve --body-timeout 5s", "-B", ["--body-timeout", "5s"]),
    ("plain uvicorn", "-B", None),
]
#: The attack app (:mod:`benchmarks.attack.app`): ``-H`` asks for ``/hello``, ``-B``
#: posts a receipt (a JSON body the ledger route reads to its end).
APP = "benchmarks.attack.app:app"
#: Seconds between slowhttptest's follow-ups: ``-H`` trickles a header line every 3 s
#: (a deadline for the whole head must cut it); ``-B`` sends a body piece every 10 s,
#: which a 5 s stall limit cuts and the default 30 s does not.
INTERVAL = {"-H": 3, "-B": 10}
RECEIPT = "/transfers/" + "A" * 22 + "/receipt"


@dataclass
class Result:
    """What one server did under one attack."""

    name: str
    mode: str
    command: str
    limit: float | None  # the timeout that should cut the attack, seconds
    held: dict[int, tuple[float, float]] = field(default_factory=dict)  # port: first, last
    open_at: dict[int, int] = field(default_factory=dict)  # second: connections open
    peak: int = 0
    keepalive_ok: int = 0
    keepalive_failed: int = 0
    cpu_seconds: float = 0.0

    def longest(self) -> float:
        return max((last - first for first, last in self.held.values()), default=0.0)


def keepalive_client(port: int, stop: threading.Event, result: Result) -> None:
    """A normal client: one connection, ``GET /hello`` once a second, reconnects if closed."""
    sock: socket.socket | None = None
    while not stop.wait(1.0):
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n")
            data = b""
            while not data.endswith(b"HelloWorld") and b"0\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            ok = data.startswith(b"HTTP/1.1 200")
            result.keepalive_ok += ok
            result.keepalive_failed += not ok
        except OSError:
            result.keepalive_failed += 1
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()


def attack(result: Result, argv: list[str], port: int, args: argparse.Namespace, tmp: Path) -> None:
    import subprocess

    with server(argv, port, tmp / "server.log") as proc:
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        stop = threading.Event()
        normal = threading.Thread(target=keepalive_client, args=(port, stop, result), daemon=True)
        normal.start()
        time.sleep(1.5)  # the normal client's connection exists before the attack
        normal_ports = {c.raddr[1] for c in ps.net_connections("tcp") if c.raddr}
        cmd = [
            args.slowhttptest, result.mode, "-c", str(args.connections), "-r", "200",
            "-l", str(args.duration), "-i", str(INTERVAL[result.mode]), "-s", "4096",
            "-x", "24", "-p", "3",
        ]  # fmt: skip
        if result.mode == "-B":
            cmd += ["-t", "POST", "-f", "application/json"]
            cmd += ["-u", f"http://127.0.0.1:{port}{RECEIPT}"]
        else:
            cmd += ["-u", f"http://127.0.0.1:{port}/hello"]
        slow = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        try:
            while slow.poll() is None and time.monotonic() - start < args.duration + 20:
                now = time.monotonic() - start
                ports = {
                    c.raddr[1]
                    for c in ps.net_connections("tcp")
                    if c.status == "ESTABLISHED" and c.raddr and c.laddr[1] == port
                } - normal_ports
                for p in ports:
                    first, _ = result.held.get(p, (now, now))
                    result.held[p] = (first, now)
                result.open_at.setdefault(int(now), len(ports))
                result.peak = max(result.peak, len(ports))
                time.sleep(0.25)
        finally:
            if slow.poll() is None:
                slow.terminate()
                slow.wait(10)
            stop.set()
            normal.join(10)
        result.cpu_seconds = sum(ps.cpu_times()[:2]) - cpu0


def report(results: list[Result], args: argparse.Namespace) -> list[str]:
    lines = [
        "### Slowloris and slow body (`slowhttptest -H` / `-B`)",
        "",
        f"`slowhttptest -H|-B -c {args.connections} -r 200 -l {args.duration} -s 4096 "
        f"-x 24 -p 3`, `-H -i 3` at `/hello`, `-B -i 10` posting a JSON receipt to the "
        "ledger route "
        "(`-t POST -f application/json`), against `benchmarks.attack.app`, while a "
        "keep-alive client sends `GET /hello` on one connection once a second. "
        "Server-side samples every 0.25 s (psutil, by client port). "
        "Command: `python -m benchmarks.attack.slowloris`.",
        "",
        "| server | attack | timeout | peak held | held at 10 s | held at 25 s "
        "| longest held | within timeout + 10 % | keep-alive ok / failed | server CPU |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        limit = "-" if r.limit is None else f"{r.limit:g} s"
        # 0.25 s sampling and slowhttptest's 200/s ramp: a 0.5 s allowance on top.
        ok = r.limit is not None and r.longest() <= r.limit * 1.1 + 0.5
        within = "-" if r.limit is None else ("yes" if ok else "**no**")
        lines.append(
            f"| {r.command} | `{r.mode}` | {limit} | {r.peak} | {r.open_at.get(10, 0)} "
            f"| {r.open_at.get(25, 0)} | {r.longest():.1f} s | {within} "
            f"| {r.keepalive_ok} / {r.keepalive_failed} | {r.cpu_seconds:.2f} s |"
        )
    lines += [
        "",
        "*Held* counts the server's ESTABLISHED connections from the attack (the keep-alive "
        "client's excluded); *longest held* is the longest any one attack connection stayed "
        "open at the server. slowhttptest does not reopen closed connections. The body "
        "timeout is a *stall* limit between reads (like nginx's `client_body_timeout`): "
        "`-B` sends a piece every 10 s, which the default 30 s limit allows by design; a "
        "body that trickles faster than the stall limit is never cut (an earlier run with "
        "`-i 3` held all 500 for the whole 30 s, also with `--body-timeout 5s`): that "
        "would take a minimum body rate, which `serve` does not have. Shared 2-core "
        "machine; other work ran at the same time.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--duration", type=int, default=30, help="attack seconds")
    parser.add_argument("--slowhttptest", default=shutil.which("slowhttptest") or "")
    parser.add_argument("--only", help="run only the runs whose name contains this")
    args = parser.parse_args(argv)
    if not args.slowhttptest:
        print("slowhttptest is not installed (apt-get install slowhttptest)", file=sys.stderr)
        return 2
    results = run_all(args)
    print("\n".join(report(results, args)))
    return 0


def run_all(args: argparse.Namespace) -> list[Result]:
    """Every run of :data:`RUNS` (or those matching ``args.only``)."""
    py = sys.executable
    results = []
    for name, mode, flags in RUNS:
        if args.only and args.only not in name:
            continue
        port = free_port()
        common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        if flags is None:
            cmd = [py, "-m", "uvicorn", APP, *common]
            shown, limit = "plain `uvicorn`", None
        else:
            cmd = [py, "-m", "sluicegate", "serve", "--app", APP, *common, *flags]
            shown = "`sluicegate serve " + " ".join(flags) + "`"
            limit = _limit(mode, flags)
        print(f"... {name}: {shown} {mode}", file=sys.stderr)
        result = Result(name, mode, shown, limit)
        with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp:
            os.environ["ATTACK_DIR"] = tmp
            attack(result, cmd, port, args, Path(tmp))
        results.append(result)
        with contextlib.suppress(Exception):
            print(f"    longest held {result.longest():.1f} s, peak {result.peak}", file=sys.stderr)
    return results


def _limit(mode: str, flags: list[str]) -> float:
    from sluicegate.cli.readtimeouts import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT
    from sluicegate.units import parse_duration

    flag = "--header-timeout" if mode == "-H" else "--body-timeout"
    if flag in flags:
        return parse_duration(flags[flags.index(flag) + 1])
    return DEFAULT_HEADER_TIMEOUT if mode == "-H" else DEFAULT_BODY_TIMEOUT


if __name__ == "__main__":
    sys.exit(main())
