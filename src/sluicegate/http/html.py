"""Head-first HTML pages: send the ``<head>`` now, render the body with retries and fallbacks.

Once the first byte of a response is sent, its status is sent too: a page that fails
half-way cannot turn into a ``500``. For HTML there is a better answer than an aborted
transfer. Send the document head (stylesheets, preloads, preconnects) at once, so the
browser starts fetching them while the server is still working; then render each part
of the body with a retry policy, and when a part still fails write a fallback fragment
in its place. The browser always gets a whole, well-formed page, and the ``200`` it
got is honest: the page it describes is the one it received::

    from sluicegate.http.html import HTMLStream, Retry, Section

    HEAD = (
        '<!doctype html><html><head><title>Orders</title>'
        '<link rel="stylesheet" href="/static/site.css"></head><body>'
    )

    async def orders(request):
        return HTMLStream(
            HEAD,
            [
                Section(render_orders, fallback="<p>Orders are unavailable ({error}).</p>"),
                Section(render_recommendations, fallback=""),
            ],
            retry=Retry(times=3, timeout=1.0),
        )

:func:`retry` is the same policy as a helper for any coroutine function.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from sluicegate.engine.channel import FLUSH
from sluicegate.engine.response import StreamResponse
from sluicegate.errors import ConfigError

__all__ = [
    "HTMLStream",
    "Retry",
    "Section",
    "SectionOutcome",
    "error_text",
    "retry",
]

logger = logging.getLogger("sluicegate.http.html")

T = TypeVar("T")

#: ``on_error(attempt, error, delay)``: ``delay`` is the pause before the next attempt,
#: or None when this failure is the last one (attempts spent, or not retryable).
OnError = Callable[[int, BaseException, "float | None"], None]

#: Replaced, in a string fallback, by :func:`error_text` of the section's error.
ERROR_PLACEHOLDER = "{error}"


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: float) -> bool:
    return _is_real(value) and math.isfinite(value)


def _check_pauses(timeout: float | None, backoff: float, max_backoff: float, jitter: float) -> None:
    """:class:`Retry`'s time options: each a real number in its range, or ConfigError.

    Typed as the fields are, but checked as anything a caller may pass.
    """
    if timeout is not None and not (_finite(timeout) and timeout > 0):
        raise ConfigError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
    if not (_finite(backoff) and backoff >= 0):
        raise ConfigError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
    if not _finite(max_backoff):
        raise ConfigError(f"max_backoff must be a number of seconds, not {max_backoff!r}")
    if max_backoff < backoff:
        raise ConfigError(f"max_backoff ({max_backoff!r}) must be >= backoff ({backoff!r})")
    if not (_is_real(jitter) and 0 <= jitter <= 1):
        raise ConfigError(f"jitter must be between 0 and 1, not {jitter!r}")


def _check_retry_on(retry_on: object) -> None:
    if (
        not isinstance(retry_on, tuple)
        or not retry_on
        or not all(isinstance(e, type) and issubclass(e, Exception) for e in retry_on)
    ):
        # CancelledError, KeyboardInterrupt and SystemExit are BaseExceptions on
        # purpose: retrying them would make a page impossible to stop.
        raise ConfigError(
            f"retry_on must be a non-empty tuple of Exception subclasses, not {retry_on!r}"
        )


@dataclass(frozen=True)
class Retry:
    """How hard to try: ``times`` attempts, each bounded by ``timeout`` seconds.

    After the *n*-th failure the policy waits ``min(max_backoff, backoff * 2**(n-1))``
    seconds, less a random share of up to ``jitter`` of it (``jitter=0``: exact
    exponential backoff; ``jitter=1``: "full jitter", anywhere from 0 to the cap), so
    many pages retrying one failing backend do not hit it in lockstep.

    The worst case a caller waits is ``times * timeout`` plus the backoffs: with the
    defaults, 3 × 1 s + 0.1 s + 0.2 s.

    :param times: attempts in all, >= 1 (``times=1`` means no retry).
    :param timeout: seconds allowed per attempt (``asyncio.timeout``); None for no limit.
        A timed-out attempt is always retried, whatever ``retry_on`` says.
    :param backoff: the first pause, in seconds; 0 retries at once.
    :param max_backoff: the longest pause.
    :param jitter: the share of each pause that is random, from 0 to 1.
    :param retry_on: the exceptions worth another attempt; any other is final at once.
    """

    times: int = 3
    timeout: float | None = 1.0
    backoff: float = 0.1
    max_backoff: float = 2.0
    jitter: float = 0.5
    retry_on: tuple[type[Exception], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.times, int) or isinstance(self.times, bool) or self.times < 1:
            raise ConfigError(f"times must be an int >= 1, not {self.times!r}")
        _check_pauses(self.timeout, self.backoff, self.max_backoff, self.jitter)
        _check_retry_on(self.retry_on)

    def delay(self, failures: int, rand: float) -> float:
        """The pause after ``failures`` failed attempts, given a uniform ``rand`` in [0, 1).

        Pure, so the schedule can be checked without sleeping::

            >>> policy = Retry(backoff=0.1, max_backoff=0.3, jitter=0)
            >>> [policy.delay(n, 0.0) for n in (1, 2, 3)]
            [0.1, 0.2, 0.3]
        """
        if failures < 1:
            raise ConfigError(f"failures must be >= 1, not {failures!r}")
        # Past 2**64 every realistic cap is reached; this also keeps the float finite.
        base = min(self.max_backoff, self.backoff * 2.0 ** min(failures - 1, 64))
        return base * (1.0 - self.jitter * rand)

    async def run(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        on_error: OnError | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> T:
        """Call ``fn()`` until it returns, at most :attr:`times` times; see :func:`retry`."""
        if _is_awaitable(fn):
            raise ConfigError(
                "retry needs a function to call once per attempt, not an awaitable "
                "(write retry(load), not retry(load()))"
            )
        if not callable(fn):
            raise ConfigError(f"retry needs a callable, not {fn!r}")
        failures = 0
        while True:
            timer = asyncio.timeout(self.timeout)
            try:
                async with timer:
                    return await fn()
            except Exception as exc:
                failures += 1
                timed_out = timer.expired()
                final = failures >= self.times or not (timed_out or isinstance(exc, self.retry_on))
                if final:
                    if on_error is not None:
                        on_error(failures, exc, None)
                    if timed_out:
                        exc.add_note(f"sluicegate: attempt timed out after {self.timeout}s")
                    exc.add_note(f"sluicegate: gave up after {failures} attempt(s)")
                    raise
                pause = self.delay(failures, rand())
                if on_error is not None:
                    on_error(failures, exc, pause)
            # The pause is outside the except block so the failed attempt's traceback
            # is not kept alive (and chained) while we sleep.
            await sleep(pause)


def _is_awaitable(obj: object) -> bool:
    """True (and the coroutine closed, so it warns nobody) when ``obj`` is an awaitable."""
    if asyncio.iscoroutine(obj):
        obj.close()
        return True
    return hasattr(obj, "__await__")


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    times: int = 3,
    # Per attempt, not overall: a caller's asyncio.timeout cannot express that.
    timeout: float | None = 1.0,  # noqa: ASYNC109
    backoff: float = 0.1,
    max_backoff: float = 2.0,
    jitter: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    on_error: OnError | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await ``fn()`` with the :class:`Retry` policy these arguments describe.

    Returns the first result. When every attempt failed (or one failed with an
    exception outside ``retry_on``) the last exception is re-raised, with notes saying
    how many attempts were made; a timed-out attempt raises :class:`TimeoutError`.
    Cancellation is never retried or swallowed.

    ``on_error(attempt, error, delay)`` is called after each failure (``delay`` is None
    for the last one); ``sleep`` and ``rand`` are there for tests and simulations::

        profile = await retry(lambda: api.get_profile(user_id), times=3, timeout=0.5)

    :raises ConfigError: for a bad argument (``times < 1``, ``timeout <= 0``,
        ``max_backoff < backoff``, ...) or an awaitable where a function is needed.
    """
    policy = Retry(
        times=times,
        timeout=timeout,
        backoff=backoff,
        max_backoff=max_backoff,
        jitter=jitter,
        retry_on=retry_on,
    )
    return await policy.run(fn, on_error=on_error, sleep=sleep, rand=rand)


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"`` for ``exc``, HTML-escaped, safe to put in a page.

    Use it in a fallback function: error messages often quote user input or upstream
    responses, and must never be written into a page as markup::

        Section(load, fallback=lambda exc: f"<p class=error>{error_text(exc)}</p>")
    """
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return html.escape(text, quote=True)


@dataclass(frozen=True)
class Section:
    """One part of a page's body: how to render it, and what to write if that fails.

    :param render: a coroutine function returning the fragment (trusted HTML); called
        once per attempt.
    :param fallback: written in place of the fragment when every attempt failed. A
        string is trusted HTML in which ``{error}`` (and nothing else: braces in
        inline CSS or JS are safe) becomes the escaped :func:`error_text`; a function
        gets the exception and returns trusted HTML, so it must escape what it quotes
        from it (use :func:`error_text`).
    :param name: for logs and :attr:`HTMLStream.outcomes`; defaults to the name of
        ``render``.
    :param retry: this section's policy, instead of the page's.
    """

    render: Callable[[], Awaitable[str]]
    fallback: str | Callable[[BaseException], str] = ""
    name: str = ""
    retry: Retry | None = None

    def __post_init__(self) -> None:
        if _is_awaitable(self.render) or not callable(self.render):
            raise ConfigError(
                "Section.render must be a coroutine function, called once per attempt "
                f"(Section(load), not Section(load())); got {self.render!r}"
            )
        if not isinstance(self.fallback, str) and not callable(self.fallback):
            raise ConfigError(
                f"Section.fallback must be a str or a function, not {self.fallback!r}"
            )
        if self.retry is not None and not isinstance(self.retry, Retry):
            raise ConfigError(f"Section.retry must be a Retry, not {self.retry!r}")
        if not self.name:
            name = getattr(self.render, "__qualname__", None) or repr(self.render)
            object.__setattr__(self, "name", name)

    def fallback_for(self, exc: BaseException) -> str:
        """The fragment to write because rendering failed with ``exc``.

        Never raises: a fallback function that fails (or returns something other than
        a ``str``) is logged and the section is left empty, so the page stays whole.
        """
        fallback = self.fallback
        if isinstance(fallback, str):
            return fallback.replace(ERROR_PLACEHOLDER, error_text(exc))
        try:
            fragment = fallback(exc)
            if not isinstance(fragment, str):
                raise TypeError(f"fallback returned {type(fragment).__name__}, not str")
        except Exception:
            logger.exception("fallback of section %r failed; leaving the section empty", self.name)
            return ""
        return fragment


@dataclass
class SectionOutcome:
    """How one section went: what :attr:`HTMLStream.outcomes` records, in page order."""

    #: The section's name.
    name: str
    #: Attempts made (0 when the section was never rendered, e.g. the client left).
    attempts: int = 0
    #: The error that made the fallback be written; None when the section rendered.
    error: BaseException | None = None
    #: Seconds from the first attempt to the fragment (or fallback) being ready.
    seconds: float = 0.0
    #: True once the fragment (or fallback) was handed to the response.
    written: bool = field(default=False)

    @property
    def ok(self) -> bool:
        """True when the section rendered (no fallback)."""
        return self.error is None


class HTMLStream(StreamResponse):
    """A head-first HTML page: ``head``, then each section in order, then ``tail``.

    ``head`` (doctype, ``<head>`` with its links and resource hints, the opening
    ``<body>``) is handed over as its own message before any section is called, and
    leaves at the first ``await`` of the first section, so the browser fetches
    stylesheets and scripts while the body renders. Each section is
    awaited under ``retry`` (or its own policy); one that still fails is replaced by
    its fallback and logged on the ``sluicegate.http.html`` logger. The status stays
    ``status`` (200) because the page the client gets is complete.

    With ``concurrency=n`` up to *n* sections render at once, but they are still
    written in page order: a slow first section holds back a fast second one (that is
    the price of plain HTML without client-side reordering). When the client leaves,
    the renders still pending are cancelled.

    An ``HTMLStream`` is one response: build one per request.

    :param head: everything up to and including ``<body ...>``; trusted HTML.
    :param sections: the body's parts, in page order.
    :param tail: written after the last section.
    :param retry: the default policy for every section.
    :param concurrency: how many sections may render at the same time, >= 1.
    """

    media_type = "text/html"

    def __init__(
        self,
        head: str,
        sections: Sequence[Section],
        *,
        tail: str = "</body></html>",
        retry: Retry | None = None,
        concurrency: int = 1,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        high_water_mark: int = 65536,
        charset: str = "utf-8",
    ) -> None:
        if not isinstance(head, str) or not isinstance(tail, str):
            raise ConfigError("head and tail must be str (the page's own trusted HTML)")
        sections = tuple(sections)
        bad = [s for s in sections if not isinstance(s, Section)]
        if bad:
            raise ConfigError(f"sections must be Section objects, not {bad[0]!r}")
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, not {concurrency!r}")
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigError(f"retry must be a Retry, not {retry!r}")
        if not isinstance(status, int) or not 200 <= status <= 599 or status in (204, 304):
            raise ConfigError(f"status must be a status with a body (200-599), not {status!r}")
        self.head = head
        self.sections = sections
        self.tail = tail
        self.retry = retry if retry is not None else Retry()
        self.concurrency = concurrency
        #: One record per section, filled in as the page is produced.
        self.outcomes = [SectionOutcome(s.name) for s in sections]
        self._called = False
        super().__init__(
            self._body(),
            status_code=status,
            headers=headers,
            media_type=self.media_type,
            background=background,
            high_water_mark=high_water_mark,
            charset=charset,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the page (once)."""
        if self._called:
            raise ConfigError(
                "an HTMLStream is one response and was already sent; build one per request"
            )
        self._called = True
        await super().__call__(scope, receive, send)

    async def _body(self) -> AsyncIterator[object]:  # str fragments and FLUSH
        yield self.head
        # The head is its own message, never coalesced with the first section: it leaves
        # as soon as that section awaits anything (a render that blocks the event loop
        # would hold it back, as it holds back everything else).
        yield FLUSH
        if self.concurrency == 1:
            for index in range(len(self.sections)):
                yield await self._render(index)
                self.outcomes[index].written = True
        else:
            # aclosing: when this generator is closed while parked at its yield (a slow
            # client, then a disconnect), `async for` alone would leave the inner one,
            # and the renders it started, to the garbage collector.
            async with contextlib.aclosing(self._render_ahead()) as fragments:
                async for index, fragment in fragments:
                    yield fragment
                    self.outcomes[index].written = True
        yield self.tail

    async def _render_ahead(self) -> AsyncGenerator[tuple[int, str], None]:
        """Render up to ``concurrency`` sections ahead, yield them in page order."""
        pending: deque[asyncio.Task[str]] = deque()
        count = len(self.sections)
        started = 0
        try:
            while started < min(self.concurrency, count):
                pending.append(self._start(started))
                started += 1
            for index in range(count):
                fragment = await pending[0]
                pending.popleft()
                if started < count:
                    # Start the next one before the yield, which may wait on a slow client.
                    pending.append(self._start(started))
                    started += 1
                yield index, fragment
        finally:
            # Reached on client disconnect (the engine closes the generator) or any error:
            # renders nobody will read must not keep running.
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def _start(self, index: int) -> asyncio.Task[str]:
        name = f"sluicegate-html-section-{index}"
        return asyncio.create_task(self._render(index), name=name)

    async def _render(self, index: int) -> str:
        """The section's fragment, or its fallback; raises only BaseExceptions (cancel)."""
        section = self.sections[index]
        outcome = self.outcomes[index]
        policy = section.retry or self.retry
        started = time.perf_counter()

        def on_error(attempt: int, exc: BaseException, pause: float | None) -> None:
            outcome.attempts = attempt
            if pause is not None:
                logger.warning(
                    "section %r: attempt %d/%d failed (%s); retrying in %.3fs",
                    section.name,
                    attempt,
                    policy.times,
                    _describe(exc),
                    pause,
                )

        try:
            fragment = await policy.run(section.render, on_error=on_error)
            outcome.attempts += 1
            if not isinstance(fragment, str):
                raise TypeError(
                    f"section {section.name!r} rendered {type(fragment).__name__}, not str"
                )
        except Exception as exc:
            outcome.error = exc
            outcome.seconds = time.perf_counter() - started
            logger.error(
                "section %r failed after %d attempt(s) (%s); writing its fallback",
                section.name,
                max(outcome.attempts, 1),
                _describe(exc),
                exc_info=exc,
            )
            return section.fallback_for(exc)
        outcome.seconds = time.perf_counter() - started
        return fragment


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
