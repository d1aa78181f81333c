"""What the doctor's runs raise: the server under test could not be started or stopped.

Only the tools raise it (``sluicegate demo`` runs its scenarios under the doctor), so it
lives here rather than in :mod:`sluicegate.errors`; this module imports only the stdlib.
"""

from __future__ import annotations

from sluicegate.errors import SluicegateError

__all__ = ["DoctorError"]


class DoctorError(SluicegateError):
    """The doctor could not start, sample or stop the server under test."""
