"""Human units for sizes and durations."""

from __future__ import annotations

import doctest
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate import ConfigError, units


def test_docstring_examples() -> None:
    assert doctest.testmod(units).failed == 0


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5M", "1..5K", "5 M B"])
def test_bad_sizes_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="bad size"):
        units.parse_size(text)


@pytest.mark.parametrize("text", ["", "soon", "5 days", "-1s"])
def test_bad_durations_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="bad duration"):
        units.parse_duration(text)


# -- untrusted text: never anything but a value in range or a ConfigError ----------

_UNITS = ["", "b", "K", "k", "KiB", "M", "MiB", "G", "GiB", "KB", "MB", "GB", "ms", "s", "m", "h"]
_NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**400).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "9" * 309, "-0", "0x10"]),
)
_TEXTS = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda n, u, sep: f"{n}{sep}{u}",
        _NUMBERS,
        st.sampled_from(_UNITS),
        st.sampled_from(["", " "]),
    ),
    st.builds(lambda n: n + "/s", _NUMBERS),
)


@given(_TEXTS)
def test_parsers_give_a_bounded_value_or_a_config_error(text: str) -> None:
    for parse, limit in (
        (units.parse_size, units.MAX_SIZE),
        (units.parse_rate, units.MAX_RATE),
        (lambda t: units.parse_duration(t, forever=False), units.MAX_DURATION),
    ):
        try:
            value = parse(text)
        except ConfigError:
            continue
        assert value == value, text  # not NaN
        assert 0 <= value <= limit, (text, value)


@given(st.integers(min_value=0, max_value=units.MAX_SIZE))
def test_sizes_round_trip_exactly(n: int) -> None:
    assert units.parse_size(str(n)) == n


@given(st.integers(min_value=units.MAX_SIZE + 1, max_value=10**400))
def test_sizes_above_the_limit_are_refused(n: int) -> None:
    with pytest.raises(ConfigError, match="bad size"):
        units.parse_size(str(n)[: units.MAX_TEXT])


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (units.parse_size, "9" * 309),
        (units.parse_size, "9" * 40),
        (units.parse_size, "2000000G"),
        (units.parse_size, "nan"),
        (units.parse_size, "inf"),
        (units.parse_size, "-1"),
        (units.parse_size, "1e3"),
        (units.parse_size, "\u0661\u0662"),  # Arabic-Indic digits: \d would take them
        (units.parse_duration, "\u0663s"),
        (units.parse_rate, "9" * 40),
        (units.parse_rate, "nan/s"),
        (units.parse_rate, "-1K"),
        (units.parse_duration, "9" * 40),
        (units.parse_duration, "400d"),
        (units.parse_duration, "9999999h"),
        (units.parse_duration, "nan"),
        (units.parse_duration, "-1s"),
    ],
)
def test_named_bad_numbers(parse: object, text: str) -> None:
    with pytest.raises(ConfigError, match=r"^bad "):
        parse(text)  # type: ignore[operator]


def test_forever_only_where_allowed() -> None:
    assert units.parse_duration("forever") == float("inf")
    with pytest.raises(ConfigError, match="finite"):
        units.parse_duration("inf", forever=False)


def test_limits_are_inclusive() -> None:
    assert units.parse_size("1048576G") == units.MAX_SIZE
    assert units.parse_rate(str(units.MAX_SIZE)) == units.MAX_RATE
    assert units.parse_duration("8760h") == units.MAX_DURATION
    assert Decimal(units.parse_size("1.5MB")) == 1_500_000
