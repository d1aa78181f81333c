"""What the live-events package raises, placed in sluicegate's one error tree.

::

    SluicegateError
    ├── ConfigError
    │   └── EventError           an event that cannot be framed (bad id, data not UTF-8/JSON)
    │       └── EventTooLarge    an encoded event over the broadcast's max_event_size
    ├── UnknownTopic (LookupError)   a topic the broadcast was not told about -> 404
    ├── BadLastEventId (ValueError)  a Last-Event-ID this backend never makes  -> 400
    └── StreamError
        ├── BackendUnavailable   the backend (Redis) went away: in-band error, or 503
        └── SlowSubscriber       a ``disconnect`` subscriber stayed full too long

The ones a request can cause (unknown topic, bad ``Last-Event-ID``, backend down before
the stream starts) become problem+json responses in
:class:`~sluicegate.events.stream.EventStream`; the others reach the publisher.
"""

from __future__ import annotations

from sluicegate.errors import ConfigError, SluicegateError, StreamError

__all__ = [
    "BackendUnavailable",
    "BadLastEventId",
    "EventError",
    "EventTooLarge",
    "SlowSubscriber",
    "UnknownTopic",
]


class EventError(ConfigError):
    """An event that cannot be framed: a line break in its id or type, data not text."""


class EventTooLarge(EventError):
    """An encoded event is larger than the broadcast's ``max_event_size``."""


class UnknownTopic(SluicegateError, LookupError):
    """A topic the broadcast does not carry."""


class BadLastEventId(SluicegateError, ValueError):
    """A ``Last-Event-ID`` that is not of the form this backend writes (``<int>-<int>``)."""


class BackendUnavailable(StreamError):
    """The event backend could not be reached (Redis went away)."""


class SlowSubscriber(StreamError):
    """A subscriber with the ``disconnect`` policy stayed full for its limit and was cut."""
