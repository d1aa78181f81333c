"""The retry policy, without sockets: attempts, per-try timeouts, backoff, argument errors."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.errors import ConfigError
from sluicegate.http.html import Retry, error_text, retry


class Flaky:
    """Fails ``failures`` times (with ``error``, or by hanging), then returns ``value``."""

    def __init__(self, failures: int, error: BaseException | None = None, value: str = "ok"):
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            if self.error is None:
                await asyncio.sleep(3600)  # hang: only the per-try timeout ends this
            else:
                raise self.error
        return self.value


class Sleeps:
    """A recording, instant ``sleep``."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_success_after_failures_returns_the_value() -> None:
    fn, sleep = Flaky(2, ConnectionError("refused")), Sleeps()
    errors: list[tuple[int, str, float | None]] = []
    result = await retry(
        fn, times=3, sleep=sleep, on_error=lambda n, e, d: errors.append((n, str(e), d))
    )
    assert result == "ok" and fn.calls == 3
    assert [(n, e) for n, e, _ in errors] == [(1, "refused"), (2, "refused")]
    assert [d for *_, d in errors] == sleep.delays and len(sleep.delays) == 2


async def test_first_success_makes_no_pause() -> None:
    sleep = Sleeps()
    assert await retry(Flaky(0), sleep=sleep) == "ok"
    assert sleep.delays == []


async def test_each_try_has_its_own_timeout() -> None:
    fn, sleep = Flaky(2, error=None), Sleeps()  # two hanging attempts, then success
    errors: list[BaseException] = []
    result = await retry(
        fn, times=3, timeout=0.05, sleep=sleep, on_error=lambda n, e, d: errors.append(e)
    )
    assert result == "ok" and fn.calls == 3
    assert [type(e) for e in errors] == [TimeoutError, TimeoutError]


async def test_exhaustion_reraises_the_last_error_with_notes() -> None:
    fn = Flaky(5, KeyError("gone"))
    errors: list[float | None] = []
    with pytest.raises(KeyError) as info:
        await retry(fn, times=3, sleep=Sleeps(), on_error=lambda n, e, d: errors.append(d))
    assert fn.calls == 3
    assert errors[-1] is None and None not in errors[:-1]  # only the last is final
    assert "sluicegate: gave up after 3 attempt(s)" in info.value.__notes__


async def test_timeouts_exhausted_raise_timeout_error() -> None:
    with pytest.raises(TimeoutError) as info:
        await retry(Flaky(9, error=None), times=2, timeout=0.02, sleep=Sleeps())
    assert any("timed out after 0.02s" in note for note in info.value.__notes__)


async def test_backoff_sequence_doubles_to_the_cap_with_injected_jitter() -> None:
    sleep = Sleeps()
    with pytest.raises(ValueError):
        await retry(
            Flaky(9, ValueError()),
            times=6,
            backoff=0.1,
            max_backoff=0.5,
            jitter=0.5,
            sleep=sleep,
            rand=lambda: 0.5,  # takes away a quarter of each pause
        )
    assert sleep.delays == pytest.approx([0.075, 0.15, 0.3, 0.375, 0.375])


async def test_no_jitter_is_plain_exponential_and_zero_backoff_retries_at_once() -> None:
    sleep = Sleeps()
    with pytest.raises(ValueError):
        await retry(Flaky(9, ValueError()), times=4, jitter=0, sleep=sleep, rand=lambda: 0.99)
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.4])
    sleep = Sleeps()
    with pytest.raises(ValueError):
        await retry(Flaky(9, ValueError()), times=3, backoff=0, max_backoff=0, sleep=sleep)
    assert sleep.delays == [0, 0]


@given(
    failures=st.integers(1, 10_000),
    rand=st.floats(0, 1, exclude_max=True),
    backoff=st.floats(0, 10),
    extra=st.floats(0, 100),
    jitter=st.floats(0, 1),
)
def test_delay_stays_between_the_jitter_floor_and_the_cap(
    failures: int, rand: float, backoff: float, extra: float, jitter: float
) -> None:
    policy = Retry(backoff=backoff, max_backoff=backoff + extra, jitter=jitter)
    delay = policy.delay(failures, rand)
    base = min(policy.max_backoff, backoff * 2.0 ** min(failures - 1, 64))
    assert base * (1 - jitter) - 1e-9 <= delay <= policy.max_backoff + 1e-9


async def test_errors_outside_retry_on_are_final_at_once() -> None:
    fn = Flaky(5, ValueError("bad input"))
    with pytest.raises(ValueError):
        await retry(fn, times=3, retry_on=(ConnectionError,), sleep=Sleeps())
    assert fn.calls == 1


async def test_a_timed_out_try_is_retried_even_when_retry_on_is_narrow() -> None:
    fn = Flaky(1, error=None)
    result = await retry(fn, timeout=0.02, retry_on=(ConnectionError,), sleep=Sleeps())
    assert result == "ok" and fn.calls == 2


async def test_a_timeout_error_raised_by_fn_itself_follows_retry_on() -> None:
    # Only the policy's own timer makes a TimeoutError retryable regardless of retry_on.
    fn = Flaky(5, TimeoutError("upstream said so"))
    with pytest.raises(TimeoutError):
        await retry(fn, retry_on=(ConnectionError,), sleep=Sleeps())
    assert fn.calls == 1


async def test_cancellation_is_neither_retried_nor_swallowed() -> None:
    fn = Flaky(9, error=None)
    task = asyncio.create_task(retry(fn, times=5, timeout=None, sleep=Sleeps()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1


async def test_cancellation_during_the_pause_stops_retrying() -> None:
    fn = Flaky(9, ValueError())
    task = asyncio.create_task(retry(fn, times=5, backoff=30, max_backoff=30))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"times": 0}, "times must be an int >= 1, not 0"),
        ({"times": 2.0}, "times must be an int >= 1, not 2.0"),
        ({"times": True}, "times must be an int >= 1, not True"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0 or None, not 0"),
        ({"timeout": -1.0}, "timeout must be a number of seconds > 0 or None, not -1.0"),
        ({"timeout": float("inf")}, "timeout must be a number of seconds > 0 or None, not inf"),
        ({"backoff": -0.1}, "backoff must be a number of seconds >= 0, not -0.1"),
        ({"max_backoff": float("nan")}, "max_backoff must be a number of seconds, not nan"),
        ({"backoff": 1.0, "max_backoff": 0.5}, "max_backoff (0.5) must be >= backoff (1.0)"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1, not 1.5"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple of Exception subclasses"),
        ({"retry_on": (asyncio.CancelledError,)}, "retry_on must be a non-empty tuple"),
        ({"retry_on": [ValueError]}, "retry_on must be a non-empty tuple"),
    ],
)
async def test_bad_arguments_are_precise_config_errors(
    kwargs: dict[str, Any], message: str
) -> None:
    fn = Flaky(0)
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        await retry(fn, **kwargs)
    with pytest.raises(ConfigError):
        Retry(**kwargs)
    assert fn.calls == 0
    assert issubclass(ConfigError, ValueError)


async def test_a_coroutine_instead_of_a_function_is_refused_without_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match=r"retry\(load\), not retry\(load\(\)\)"):
            await retry(Flaky(0)())  # type: ignore[arg-type]
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    with pytest.raises(ConfigError, match="needs a callable"):
        await retry("not callable")  # type: ignore[arg-type]


def test_delay_rejects_zero_failures() -> None:
    with pytest.raises(ConfigError, match="failures must be >= 1"):
        Retry().delay(0, 0.0)


def test_error_text_is_escaped_and_names_the_type() -> None:
    assert error_text(ValueError('<img src=x onerror="a()"> & co')) == (
        "ValueError: &lt;img src=x onerror=&quot;a()&quot;&gt; &amp; co"
    )
    assert error_text(TimeoutError()) == "TimeoutError"
