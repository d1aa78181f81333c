"""The one decision every exporter shares: what status and times a stream is recorded with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluicegate.engine.metrics import StreamMetrics, StreamState
from sluicegate.observe.outcome import CLIENT_CLOSED_REQUEST, outcome_of

states = st.sampled_from(list(StreamState))  # the shared TransferState vocabulary
times = st.floats(0, 1e6, allow_nan=False)


@given(
    state=states,
    status=st.none() | st.integers(100, 599),
    started=times,
    head_after=st.none() | times,
    lasted=times,
)
def test_the_reported_status_and_times_follow_the_rules(
    state: StreamState, status: int | None, started: float, head_after: float | None, lasted: float
) -> None:
    m = StreamMetrics(path="/p", method="GET", started=started, status=status)
    m.first_byte = None if head_after is None else started + head_after
    m.state, m.ended = state, started + lasted
    o = outcome_of(m)
    if state == "client_gone":
        assert o.status == CLIENT_CLOSED_REQUEST
    elif status is not None:
        assert o.status == status
    else:
        assert o.status == 500  # ended before any head: the server's failure
    assert o.duration >= 0
    assert (o.time_to_first_byte is None) == (head_after is None)
    assert o.guard_cut == (state == "timed_out")
    assert (o.error_type is None) == (state == "completed")


def test_a_running_stream_has_a_duration_so_far() -> None:
    m = StreamMetrics(path="/p")
    assert outcome_of(m).duration >= 0
