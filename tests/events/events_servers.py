"""``sluicegate serve`` processes on 127.0.0.1 for the served live-events tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from tests.redis_server import free_port
from tests.servers import stop, wait_for_port

#: The command line of ``sluicegate serve``.
SERVE = [sys.executable, "-m", "sluicegate", "serve"]


class Serve:
    """One ``sluicegate serve`` process (the example app), ended by pid."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [*SERVE, "--port", str(self.port), "--log-level", "warning", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_port(self.proc, self.port, "sluicegate serve")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            stop(self.proc, grace=grace)


@contextlib.contextmanager
def serving(*args: str, port: int | None = None) -> Iterator[Serve]:
    """Run ``sluicegate serve *args``; stop it afterwards, whatever happened."""
    server = Serve(*args, port=port)
    try:
        yield server
    finally:
        server.stop()
        for pipe in (server.proc.stdout, server.proc.stderr):
            if pipe is not None:
                pipe.close()
