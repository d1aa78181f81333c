"""Human units for sizes and durations."""

from __future__ import annotations

import doctest

import pytest

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
