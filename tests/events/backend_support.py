"""Types shared by the live-events tests and their conftest (which tests cannot import)."""

from __future__ import annotations

from collections.abc import Callable

from sluicegate.events.backend import Backend

#: The ``make_backend`` fixture: a factory of unstarted backends of one kind.
MakeBackend = Callable[..., Backend]
