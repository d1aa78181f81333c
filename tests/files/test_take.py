"""``take`` and ``atake`` (sans-IO cutting shared): exactly n bytes, or SourceChanged."""

from __future__ import annotations

import asyncio
import doctest
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.errors import SourceChanged
from sluicegate.http.seekable import atake, take

chunks = st.lists(st.binary(max_size=20), max_size=8)


async def _aiter(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _acollect(items: list[bytes], n: int) -> list[bytes]:
    return [piece async for piece in atake(_aiter(items), n)]


@given(chunks, st.integers(min_value=0, max_value=200))
def test_take_and_atake_give_the_first_n_bytes_or_raise(items: list[bytes], n: int) -> None:
    whole = b"".join(items)
    for collect in (lambda: list(take(iter(items), n)), lambda: asyncio.run(_acollect(items, n))):
        if len(whole) < n:
            with pytest.raises(SourceChanged, match=f"ended {n - len(whole)} bytes before"):
                collect()
        else:
            pieces = collect()
            assert b"".join(pieces) == whole[:n]
            assert all(pieces)  # empty chunks are skipped, never sent


def test_take_reads_no_further_than_it_needs() -> None:
    source = iter([b"ab", b"cd", b"ef"])
    assert list(take(source, 3)) == [b"ab", b"c"]
    assert next(source) == b"ef"


def test_the_module_examples_hold() -> None:
    from sluicegate.http import seekable

    result = doctest.testmod(seekable)
    assert result.attempted >= 3 and result.failed == 0
