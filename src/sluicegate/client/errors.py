"""What :func:`sluicegate.client.fetch` raises (``check=True``), apart from the engine's.

They live with the client, not in :mod:`sluicegate.errors`, because only the client
raises them; they still derive from :class:`~sluicegate.errors.SluicegateError`, so one
``except`` catches everything sluicegate raises. This module imports only the stdlib:
catching a fetch error never loads the client's dependencies.
"""

from __future__ import annotations

from sluicegate.errors import SluicegateError

__all__ = ["DigestMismatch", "FetchError", "HTTPStatusError", "IncompleteTransfer"]


class FetchError(SluicegateError):
    """Base class of what :func:`sluicegate.client.fetch` raises."""


class HTTPStatusError(FetchError):
    """The server answered with a status that is not a success."""


class IncompleteTransfer(FetchError):
    """The connection ended before the whole body arrived."""


class DigestMismatch(FetchError):
    """The body arrived whole but its digest differs from the server's."""
