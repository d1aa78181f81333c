"""``sluicegate serve``: run an app (the examples by default) on uvicorn, defended.

Besides serving, it bounds what one slow reader can pin:

* ``--notsent-lowat`` sets ``TCP_NOTSENT_LOWAT`` on the listening socket it binds
  itself; on Linux the accepted sockets inherit it. The kernel then queues at most
  that many bytes a client has not been sent yet (plus what is in flight, which a
  client that stops reading closes its window on), so the kernel memory a slow reader
  pins is bounded (about 74 KiB at the default 32K), while send-buffer autotuning
  stays on for fast clients. The limit also slows a fast download (the kernel takes
  at most that many unsent bytes per write), so once a client has acknowledged
  ``--notsent-lowat-until`` bytes (8M) its connection gets the system's limit back
  (:mod:`sluicegate.cli.sendbuffer`). ``--sndbuf`` (off by default) fixes
  ``SO_SNDBUF`` instead: a hard cap, but on every client's window, fast ones too.
* ``--stall-timeout`` (60 s unless ``off``, as nginx's ``send_timeout``) and
  ``--min-rate`` set :data:`sluicegate.defaults` ``.guard``
  (a :class:`~sluicegate.protect.guard.GuardPolicy`) for every stream, and serve with
  :func:`guarded_http`, so a cut stream's connection is reset instead of waiting
  forever for the client to take what uvicorn still buffers;
* ``--max-streams``, ``--max-streams-per-client``, ``--max-buffered`` set ``.admission``
  (a :class:`~sluicegate.protect.budgets.Budgets`): over a budget a new stream gets a 503.
* ``--header-timeout`` / ``--body-timeout`` (on by default) close connections whose
  client stops *sending* a request (slowloris): see :mod:`sluicegate.cli.readtimeouts`.
* ``--return-memory`` (on by default, glibc only) makes RSS fall back after load:
  see :mod:`sluicegate.cli.malloc`.

``--ledger URL`` records every stream in a transfer ledger (a SQLite path or a
``redis://`` URL), makes it ``.ledger`` and serves it at ``/transfers`` in front of the
app (:class:`~sluicegate.ledger.mount.LedgerMount`). ``--workers N`` runs N uvicorn
worker processes on the one listening socket. Each worker sets all of the above up for
itself (:class:`ProcessSettings`, handed over in the environment): budgets, guard and
ledger connection are **per process**, so ``--max-streams 100 --workers 4`` admits up
to 400 streams at once.

``--http2`` serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge; h2 by ALPN behind
TLS) on the one port, with uvicorn's optional HTTP/2 support
(``pip install 'sluicegate[http2]'``).

Every bad value is one ``Error: ...`` line and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import json
import logging
import os
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from sluicegate.cli import malloc
from sluicegate.cli.clitools import OneLineCommand, fail, parse_option
from sluicegate.cli.readtimeouts import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    with_read_timeouts,
)
from sluicegate.cli.sendbuffer import earned_send_buffer
from sluicegate.engine.pump import BURST_MESSAGE
from sluicegate.engine.response import defaults
from sluicegate.errors import ConfigError
from sluicegate.protect.budgets import Budgets
from sluicegate.protect.guard import GuardPolicy
from sluicegate.units import MAX_SOCKET_BUFFER, parse_duration, parse_rate, parse_size

__all__ = [
    "DEFAULT_LOWAT_UNTIL",
    "DEFAULT_NOTSENT_LOWAT",
    "DEFAULT_SNDBUF",
    "DEFAULT_STALL_TIMEOUT",
    "LEDGER_PATH",
    "WORKER_SETTINGS",
    "ProcessSettings",
    "bind_socket",
    "guarded_http",
    "load_app",
    "policies",
    "reset",
    "serve_command",
    "setup_process",
    "worker_app",
    "worker_http",
]

#: where ``--ledger`` serves the transfer records
LEDGER_PATH = "/transfers"
#: the environment variable that hands :class:`ProcessSettings` to ``--workers`` processes
WORKER_SETTINGS = "SLUICEGATE_SERVE_SETTINGS"

#: ``SO_SNDBUF`` asked for by ``sluicegate serve`` unless told otherwise: the kernel's
#: autotuning. A fixed size (Linux doubles it, about half of it payload) caps every
#: connection at about that payload per round trip: 64K goes ~0.66 MB/s at 100 ms.
DEFAULT_SNDBUF = "auto"

#: ``TCP_NOTSENT_LOWAT`` set by ``sluicegate serve`` unless told otherwise: the most
#: not-yet-sent bytes the kernel queues per connection. Measured (BENCHMARKS.md,
#: slow-read section): a stalled reader pins about 74 KiB (a fixed 64K ``SO_SNDBUF``:
#: 126 KiB) and a single loopback download kept its speed.
DEFAULT_NOTSENT_LOWAT = "32K"

#: Bytes a client must have acknowledged before ``serve`` lifts its connection's
#: ``TCP_NOTSENT_LOWAT``, unless told otherwise (see :mod:`sluicegate.cli.sendbuffer`).
DEFAULT_LOWAT_UNTIL = "8M"

#: How long one ``send()`` may wait for the client before ``serve`` cuts the stream,
#: unless told otherwise (``off`` for never); nginx's ``send_timeout`` is 60 s too.
DEFAULT_STALL_TIMEOUT = "60s"

# Linux's TCP_NOTSENT_LOWAT; Python's socket module names it from 3.12 on.
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)

#: Largest ``--max-streams``: each stream needs a file descriptor, and no process has
#: a million of them.
MAX_STREAMS = 1_000_000


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and return the attribute, with one-line errors."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="--app")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {module_name!r}: {exc}"
        raise click.BadParameter(msg, param_hint="--app") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(
            f"module {module_name!r} has no attribute {attr!r}", param_hint="--app"
        ) from None


def bind_socket(
    host: str, port: int, *, sndbuf: int | None = None, notsent_lowat: int | None = None
) -> socket.socket:
    """A listening TCP socket on ``host:port`` with ``SO_SNDBUF`` set to ``sndbuf`` and
    ``TCP_NOTSENT_LOWAT`` to ``notsent_lowat``; accepted sockets inherit both (Linux).

    ``sndbuf`` None leaves the kernel's autotuning. The value is capped by
    ``net.core.wmem_max`` and doubled by Linux; read the real one back with
    ``sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)``. ``notsent_lowat`` None
    leaves the system's ``net.ipv4.tcp_notsent_lowat`` (unlimited by default); where
    the option does not exist (not Linux or macOS) it is skipped. Raises
    :class:`OSError` when the address cannot be bound.
    """
    family, type_, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if sndbuf is not None:
            # Set before listen(): accepted sockets copy the listener's buffer sizes.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if notsent_lowat is not None and sys.platform.startswith(("linux", "darwin")):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, notsent_lowat)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def policies(
    *,
    stall_timeout: float | None = None,
    min_rate: float | None = None,
    rate_window: float = 10.0,
    grace: float = 10.0,
    max_streams: int | None = None,
    max_streams_per_client: int | None = None,
    max_buffered: int | None = None,
) -> tuple[GuardPolicy | None, Budgets | None]:
    """The guard and the budgets the ``serve`` flags ask for; None for those not asked.

    ``sluicegate serve`` puts them in :data:`sluicegate.defaults` ``.guard`` and
    ``.admission``. Raises :class:`~sluicegate.errors.ConfigError` on bad values.

    >>> guard, budgets = policies(stall_timeout=30.0, min_rate=4096)
    >>> guard.wait_limit, budgets
    (32.0, None)
    """
    guard = budgets = None
    if stall_timeout is not None or min_rate is not None:
        guard = GuardPolicy(
            stall_timeout=stall_timeout, min_rate=min_rate, window=rate_window, grace=grace
        )
    if (max_streams, max_streams_per_client, max_buffered) != (None, None, None):
        budgets = Budgets(
            max_streams=max_streams,
            max_streams_per_client=max_streams_per_client,
            max_buffered=max_buffered,
        )
    return guard, budgets


def guarded_http(
    linger: float | None,
    http: str = "auto",
    *,
    header_timeout: float | None = None,
    body_timeout: float | None = None,
    lowat_until: int | None = None,
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``http``: ``auto``, ``httptools``, ``h11``) made to
    hang up on clients that stopped reading, instead of waiting for them forever.

    ``header_timeout`` and ``body_timeout`` (seconds; None: off) add the read
    timeouts of :mod:`sluicegate.cli.readtimeouts` against clients that stop *sending*
    (slowloris). ``linger`` None leaves closing as uvicorn does it. ``lowat_until``
    (bytes; None: never) lifts a connection's ``TCP_NOTSENT_LOWAT`` once its client has
    acknowledged that many bytes (:mod:`sluicegate.cli.sendbuffer`).

    uvicorn closes a connection with ``transport.close()``, which first flushes what
    the transport still holds: against a client that reads nothing, that never ends,
    so a stream the guard cut would still pin its connection, uvicorn's write buffer
    and the kernel's. ASGI has no way to ask for an abort, so this does it below ASGI:

    * a connection closed with its response **incomplete** (a guard cut, a producer
      failure after the commit) and bytes still queued is reset at once (``RST``):
      the client sees an incomplete transfer either way;
    * a connection closed after a **complete** response with bytes still queued (a
      keep-alive timeout, ``Connection: close``) gets ``linger`` seconds to take
      them, then is reset.

    Use it with uvicorn directly::

        uvicorn.run(app, http=guarded_http(linger=30.0))
    """
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    if linger is not None and not _positive_number(linger):
        raise ConfigError(f"linger must be a positive number of seconds, not {linger!r}")
    base: Any = import_from_string(HTTP_PROTOCOLS.get(http, http))
    if header_timeout is not None or body_timeout is not None:
        base = with_read_timeouts(base, header_timeout=header_timeout, body_timeout=body_timeout)
    if linger is None and lowat_until is None:
        return base  # type: ignore[no-any-return]
    patience = linger

    class GuardedHTTP(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            wrapped = earned_send_buffer(transport, lowat_until)
            if patience is not None:
                wrapped = _HangUp(wrapped, self, patience)
            super().connection_made(wrapped)

    GuardedHTTP.__name__ = GuardedHTTP.__qualname__ = f"Guarded{base.__name__}"
    return GuardedHTTP


class _HangUp:
    """A transport whose ``close()`` does not wait forever for a client to read."""

    def __init__(self, transport: asyncio.Transport, protocol: Any, linger: float) -> None:
        self._transport = transport
        self._protocol = protocol
        self._linger = linger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport = self._transport
        if transport.is_closing():
            transport.close()
            return
        transport.close()
        if transport.get_write_buffer_size() == 0:
            return  # nothing to flush: the connection closes now
        cycle = getattr(self._protocol, "cycle", None)
        if cycle is not None and not getattr(cycle, "response_complete", True):
            reset(transport)
        else:
            asyncio.get_running_loop().call_later(self._linger, reset, transport)


def reset(transport: asyncio.WriteTransport) -> None:
    """Drop a connection now, and what the kernel still queues for it (``RST``).

    A plain close would leave the kernel sending to a client that reads nothing
    (an orphan socket holding its send buffer) for minutes.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        # uvloop's socket of a connection that closed meanwhile raises ValueError
        # (negative file descriptor), asyncio's OSError: either way, nothing to reset.
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """What each serving process sets up for itself: its defaults, and the app it serves.

    Plain values only, so that ``--workers`` can hand them to new processes as JSON.
    """

    #: ``module:attribute`` of the ASGI app
    app: str
    #: keyword arguments of :func:`policies`
    policies: dict[str, Any] = field(default_factory=dict)
    #: the ledger's URL (:func:`sluicegate.ledger.ledger_from_url`), or None
    ledger: str | None = None
    #: read timeouts in seconds (None: off), see :mod:`sluicegate.cli.readtimeouts`
    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    #: fix glibc's mmap threshold and trim when idle, see :mod:`sluicegate.cli.malloc`
    return_memory: bool = True
    #: the Redis URL of the example app's ``/events`` feed, or None (in memory)
    broadcast: str | None = None
    #: serve HTTP/2 beside HTTP/1.1 (``--http2``)
    http2: bool = False
    #: lift ``TCP_NOTSENT_LOWAT`` once a client acknowledged this many bytes (None: never)
    lowat_until: int | None = None

    def http(self) -> type[asyncio.Protocol]:
        """The HTTP protocol class these settings ask for (see :func:`guarded_http`).

        A guard cuts streams; the protocol makes the cut hang up on the client. What a
        complete response left queued gets the same patience as a waiting send.
        """
        guard, _ = policies(**self.policies)
        # The read timeouts hook uvicorn's HTTP/1.1 protocols; HTTP/2 is left as it is.
        reads = not self.http2
        return guarded_http(
            None if guard is None else guard.wait_limit,
            _protocol(self),
            header_timeout=self.header_timeout if reads else None,
            body_timeout=self.body_timeout if reads else None,
            lowat_until=self.lowat_until if reads else None,
        )

    def to_json(self) -> str:
        """The settings as one JSON string."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessSettings:
        """Settings written by :meth:`to_json`."""
        return cls(**json.loads(text))


def setup_process(settings: ProcessSettings) -> Any:
    """Set this process's :data:`sluicegate.defaults` and return the app to serve.

    The app is wrapped in a :class:`~sluicegate.ledger.mount.LedgerMount` when there
    is a ledger. Raises :class:`~sluicegate.errors.ConfigError` or ``click.BadParameter``
    on bad settings, before changing anything.
    """
    from sluicegate.ledger import ledger_from_url
    from sluicegate.ledger.mount import LedgerMount

    guard, budgets = policies(**settings.policies)
    ledger = ledger_from_url(settings.ledger) if settings.ledger else None
    app = load_app(settings.app)
    # uvicorn holds a stream's bytes up to its 64 KiB write mark, whatever the message
    # size: messages may grow while the client keeps up (see Defaults.burst_message).
    defaults.burst_message = BURST_MESSAGE
    if guard is not None:
        defaults.guard = guard
    if budgets is not None:
        defaults.admission = budgets
    if ledger is not None:
        defaults.ledger = ledger
        defaults.ledger_path = LEDGER_PATH
        app = LedgerMount(app, ledger, LEDGER_PATH)
    if settings.return_memory and malloc.tune():
        malloc.IdleTrimmer().start()  # a daemon thread: it ends with the process
    if settings.broadcast is not None:
        from sluicegate.cli import examples

        examples.use_broadcast(settings.broadcast)
    # Open event streams get a final event and a retry hint when uvicorn shuts down,
    # instead of holding the shutdown up (see sluicegate.events.lifecycle).
    import uvicorn

    from sluicegate.events.lifecycle import graceful_uvicorn

    graceful_uvicorn(uvicorn.Server)
    return app


def worker_app() -> Any:
    """The app of one ``--workers`` process: uvicorn calls it (``factory=True``) there."""
    return setup_process(ProcessSettings.from_json(os.environ[WORKER_SETTINGS]))


_worker_protocol: Any = None


def worker_http(**kwargs: Any) -> asyncio.Protocol:
    """A ``--workers`` process's guarded HTTP protocol (see :func:`guarded_http`).

    uvicorn needs the protocol as an import string to hand it to a new process (a class
    made at run time cannot be pickled), so this function stands in for the class: it
    builds it once, from the settings, in the process that uses it.
    """
    global _worker_protocol
    if _worker_protocol is None:
        _worker_protocol = ProcessSettings.from_json(os.environ[WORKER_SETTINGS]).http()
    protocol: asyncio.Protocol = _worker_protocol(**kwargs)
    return protocol


def _check_ledger(url: str) -> None:
    """Open and close the ledger once, so that a bad ``--ledger`` fails before serving."""
    from sluicegate.errors import LedgerError
    from sluicegate.ledger import ledger_from_url

    async def probe() -> None:
        ledger = ledger_from_url(url)
        await ledger.open()
        await ledger.close()

    try:
        asyncio.run(probe())
    except (ConfigError, LedgerError, OSError) as exc:
        fail(f"--ledger: {exc}")


def _check_broadcast(url: str, app_spec: str) -> None:
    if app_spec != "sluicegate.cli.examples:app":
        fail("--broadcast: it puts the example app's /events on Redis; --app apps choose their own")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        fail(f"--broadcast: expected a redis://, rediss:// or unix:// URL, not {url!r}")


def _supervise(config: Any, sock: socket.socket) -> None:
    """Run ``config.workers`` uvicorn worker processes on ``sock`` until told to stop."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # uvicorn >= 0.36 builds each worker's Server itself; older ones take a target.
    if "target" in inspect.signature(Multiprocess.__init__).parameters:
        target = uvicorn.Server(config).run
        Multiprocess(config, target=target, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e9


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text, forever=False)
    if seconds <= 0:
        raise ConfigError(f"bad duration {text!r}: must be more than 0 seconds")
    return seconds


def _sndbuf(text: str) -> int | None:
    if text.strip().lower() in ("0", "auto"):
        return None
    size = parse_size(text)
    if size < 4096:
        raise ConfigError(f"bad size {text!r}: at least 4K (or 'auto' for the kernel's)")
    if size > MAX_SOCKET_BUFFER:
        # setsockopt takes a C int: past it Python raises a TypeError, not an OSError.
        raise ConfigError(f"bad size {text!r}: at most 1G (the kernel caps it lower still)")
    return size


def _notsent_lowat(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    size = parse_size(text)
    if not 1024 <= size < 2**31:
        raise ConfigError(f"bad size {text!r}: 1K to 2G (or 'off' for the kernel's)")
    return size


def _describe_lowat(lowat: int | None, until: int | None) -> str:
    if lowat is None:
        return "off"
    if until is None:
        return f"{lowat:,} bytes per connection"
    return f"{lowat:,} bytes per connection until its client has acknowledged {until:,}"


def _lowat_until(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    size = parse_size(text)
    if size < 1:
        raise ConfigError(f"bad size {text!r}: at least 1 byte (or 'off' to keep the limit)")
    return size


def _stall_timeout(text: str) -> float | None:
    return None if text.strip().lower() == "off" else _positive_duration(text)


def _grace(text: str) -> float:
    return parse_duration(text, forever=False)


@click.command("serve", cls=OneLineCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--app",
    "app_spec",
    default="sluicegate.cli.examples:app",
    show_default=True,
    help="The ASGI app to serve, as module:attribute.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
)
@click.option(
    "--sndbuf",
    default=DEFAULT_SNDBUF,
    show_default=True,
    help="SO_SNDBUF of every connection (Linux doubles it), e.g. 64K: fixes the kernel "
    "memory one reader can pin, but caps fast clients too. 'auto': the kernel's "
    "autotuning.",
)
@click.option(
    "--notsent-lowat",
    default=DEFAULT_NOTSENT_LOWAT,
    show_default=True,
    metavar="SIZE",
    help="TCP_NOTSENT_LOWAT of every connection: unsent bytes the kernel queues for one "
    "client, so a slow reader pins little while fast ones keep full speed. 'off': "
    "the system's (no limit).",
)
@click.option(
    "--notsent-lowat-until",
    default=DEFAULT_LOWAT_UNTIL,
    show_default=True,
    metavar="SIZE",
    help="Lift a connection's TCP_NOTSENT_LOWAT once its client has acknowledged this "
    "many bytes: a client that reads fast gets the kernel's whole send buffer back. "
    "'off': keep the limit for the whole connection.",
)
@click.option(
    "--stall-timeout",
    default=DEFAULT_STALL_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    help="Cut a stream whose send waited this long for the client (30s, 500ms); 'off': never.",
)
@click.option(
    "--min-rate",
    metavar="RATE",
    help="Cut a stream whose client reads slower than this, averaged over --rate-window "
    "of waiting (4K, 1M/s).",
)
@click.option(
    "--rate-window", default="10s", show_default=True, metavar="DURATION", help="See --min-rate."
)
@click.option(
    "--grace",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Waiting time before --min-rate is first judged.",
)
@click.option(
    "--max-streams",
    type=click.IntRange(1, MAX_STREAMS),
    help="Streams at once (per process).",
)
@click.option(
    "--max-streams-per-client",
    type=click.IntRange(1, MAX_STREAMS),
    help="Streams at once from one client address (per process).",
)
@click.option(
    "--max-buffered",
    metavar="SIZE",
    help="Refuse new streams while sluicegate holds this many bytes (per process).",
)
@click.option(
    "--ledger",
    "ledger_url",
    metavar="URL",
    help="Record every stream in a transfer ledger and serve it at /transfers: a SQLite "
    "path (or sqlite:///abs/path.db) or redis://host:port/db.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes on the one socket. Budgets, guard and ledger connection are "
    "per process: --max-streams 100 --workers 4 admits up to 400 streams.",
)
@click.option(
    "--broadcast",
    metavar="URL",
    help="Put the example app's /events feed on Redis Streams (redis://host:port/db), "
    "so that several serve processes (or --workers) share it.",
)
@click.option(
    "--http2",
    is_flag=True,
    help="Serve HTTP/2 (h2c) beside HTTP/1.1, (pip install 'sluicegate[http2]').",
)
@click.option(
    "--header-timeout",
    default=f"{DEFAULT_HEADER_TIMEOUT:g}s",
    show_default=True,
    metavar="DURATION",
    help="Close a connection whose request head takes longer than this (slowloris).",
)
@click.option(
    "--body-timeout",
    default=f"{DEFAULT_BODY_TIMEOUT:g}s",
    show_default=True,
    metavar="DURATION",
    help="Close a connection whose request body stalls this long between reads.",
)
@click.option(
    "--return-memory/--keep-memory",
    default=True,
    show_default=True,
    help="On glibc: keep chunks on the heap and give freed memory back (malloc_trim) "
    "once streams go idle, so RSS falls back after load (see sluicegate.cli.malloc).",
)
def serve_command(
    host: str,
    port: int,
    app_spec: str,
    log_level: str,
    sndbuf: str,
    notsent_lowat: str,
    notsent_lowat_until: str,
    stall_timeout: str,
    min_rate: str | None,
    rate_window: str,
    grace: str,
    max_streams: int | None,
    max_streams_per_client: int | None,
    max_buffered: str | None,
    ledger_url: str | None,
    workers: int,
    header_timeout: str,
    body_timeout: str,
    return_memory: bool,
    broadcast: str | None,
    http2: bool,
) -> None:
    """Serve an ASGI app on uvicorn (by default the examples: /hello, /download, /events).

    \b
    Slow-reader defences (off unless given, except --notsent-lowat and
    --stall-timeout):
      sluicegate serve --stall-timeout 30s --min-rate 4K \\
                       --max-streams 1000 --max-streams-per-client 8

    \b
    A transfer ledger at /transfers, and four worker processes:
      sluicegate serve --ledger /var/lib/app/transfers.db --workers 4
    """
    import uvicorn

    sndbuf_bytes = parse_option(_sndbuf, sndbuf, "--sndbuf")
    lowat_bytes = parse_option(_notsent_lowat, notsent_lowat, "--notsent-lowat")
    lowat_until = parse_option(_lowat_until, notsent_lowat_until, "--notsent-lowat-until")
    options: dict[str, Any] = {
        "stall_timeout": parse_option(_stall_timeout, stall_timeout, "--stall-timeout"),
        "min_rate": parse_option(parse_rate, min_rate, "--min-rate"),
        "rate_window": parse_option(_positive_duration, rate_window, "--rate-window"),
        "grace": parse_option(_grace, grace, "--grace"),
        "max_streams": max_streams,
        "max_streams_per_client": max_streams_per_client,
        "max_buffered": parse_option(parse_size, max_buffered, "--max-buffered"),
    }
    head_limit = parse_option(_positive_duration, header_timeout, "--header-timeout")
    body_limit = parse_option(_positive_duration, body_timeout, "--body-timeout")
    try:
        guard, budgets = policies(**options)
    except ConfigError as exc:
        fail(str(exc))
    if http2:
        _http2_protocol()  # fails now, in one line, if uvicorn cannot speak HTTP/2 here
    settings = ProcessSettings(
        app=app_spec,
        policies=options,
        ledger=ledger_url,
        broadcast=broadcast,
        header_timeout=head_limit,
        body_timeout=body_limit,
        return_memory=return_memory,
        http2=http2,
        # Nothing to lift without a limit; HTTP/2 connections are not wrapped.
        lowat_until=lowat_until if lowat_bytes is not None and not http2 else None,
    )
    try:
        load_app(app_spec)
    except click.BadParameter as exc:
        fail(f"--app: {exc.message}")
    if ledger_url is not None:
        _check_ledger(ledger_url)
    if broadcast is not None:
        _check_broadcast(broadcast, app_spec)
    try:
        sock = bind_socket(host, port, sndbuf=sndbuf_bytes, notsent_lowat=lowat_bytes)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        config = _config(settings, workers, host=host, port=port, log_level=log_level)
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        # uvicorn's logger: configured by Config above, so the line shows at --log-level info.
        logging.getLogger("uvicorn.error").info(
            "sluicegate: listening on %s:%d; SO_SNDBUF %s, TCP_NOTSENT_LOWAT %s; guard "
            "%s (a send may wait %s); budgets %s (per process); ledger %s; %d worker(s); "
            "read timeouts %g s (head), %g s (body stall)",
            host,
            sock.getsockname()[1],
            f"{effective:,} bytes" if sndbuf_bytes is not None else "autotuned",
            _describe_lowat(lowat_bytes, settings.lowat_until),
            guard,
            f"{guard.wait_limit:g} s" if guard is not None else "forever",
            _describe(budgets),
            f"{ledger_url} at {LEDGER_PATH}" if ledger_url else "none",
            workers,
            head_limit,
            body_limit,
        )
        if workers > 1:
            _supervise(config, sock)
        else:
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


#: uvicorn's protocol that speaks HTTP/1.1 and HTTP/2 on one port (needs ``zttp``).
HTTP2_PROTOCOL = "uvicorn.protocols.http.auto_zttp_impl:AutoZttpProtocol"


def _protocol(settings: ProcessSettings) -> str:
    """uvicorn's HTTP protocol for these settings."""
    return HTTP2_PROTOCOL if settings.http2 else "auto"


def _http2_protocol() -> str:
    """uvicorn's HTTP/2 protocol, or a one-line error when it cannot be loaded."""
    module = HTTP2_PROTOCOL.partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        fail(
            "--http2 needs uvicorn's optional HTTP/2 support "
            f"(pip install 'sluicegate[http2]'): {exc}"
        )
    return HTTP2_PROTOCOL


def _config(settings: ProcessSettings, workers: int, **options: Any) -> Any:
    """uvicorn's Config: this process set up and serving, or ``workers`` processes to be.

    The HTTP protocol is :meth:`ProcessSettings.http` (read timeouts, and hanging up
    on the clients a guard cut).
    """
    import uvicorn

    if workers > 1:
        # Each worker is a new process: it sets itself up from the environment.
        os.environ[WORKER_SETTINGS] = settings.to_json()
        return uvicorn.Config(
            f"{__name__}:worker_app",
            factory=True,
            workers=workers,
            http=f"{__name__}:worker_http",
            **options,
        )
    # Only now, with nothing left to fail: the defaults are process-wide.
    app = setup_process(settings)
    http_class: Any = settings.http()
    return uvicorn.Config(app, http=http_class, **options)


def _describe(budgets: object) -> str:
    if budgets is None:
        return "none"
    names = ("max_streams", "max_streams_per_client", "max_buffered")
    return ", ".join(f"{n}={getattr(budgets, n, None)}" for n in names)
