"""sluicegate: stream HTTP responses fast and with bounded memory."""

__version__ = "0.1.0"
