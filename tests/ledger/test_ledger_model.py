"""The sans-IO half of the ledger: ids, digests, error cleaning, state rules, verdicts."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sluicegate.ledger.model as model
from sluicegate.errors import ConfigError, LedgerError
from sluicegate.ledger.model import (
    FINAL_STATES,
    STATES,
    ErrorInfo,
    InvalidTransition,
    TransferRecord,
    Verdict,
    describe_error,
    digest_of,
    format_digest,
    is_transfer_id,
    judge,
    new_transfer_id,
    parse_digest,
    state_for_error,
)

TID = "A" * 22
BODY = b"%PDF-1.7 hello"
DIGEST = digest_of(BODY)


def started(size: int | None = len(BODY)) -> TransferRecord:
    return TransferRecord.started(TID, "GET", "/report.pdf", size=size, at=100.0)


def completed(**kw: object) -> TransferRecord:
    return started().finished("completed", len(BODY), digest=DIGEST, at=101.0, **kw)  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(model).failed == 0


# -- ids --------------------------------------------------------------------------------


def test_ids_are_22_urlsafe_chars_of_16_random_bytes() -> None:
    ids = {new_transfer_id() for _ in range(1000)}
    assert len(ids) == 1000
    for tid in ids:
        assert is_transfer_id(tid)
        assert len(base64.urlsafe_b64decode(tid + "==")) == 16


@pytest.mark.parametrize(
    "value", ["", "A" * 21, "A" * 23, "A" * 21 + "/", "A" * 21 + "=", "../" * 8, None, 42]
)
def test_malformed_ids_are_rejected(value: object) -> None:
    assert not is_transfer_id(value)


# -- digests ----------------------------------------------------------------------------


def test_digest_of_matches_rfc_9530_example_shape() -> None:
    raw = hashlib.sha256(b"hello").digest()
    assert digest_of(b"hello") == "sha-256=:" + base64.b64encode(raw).decode() + ":"
    assert parse_digest(digest_of(b"x", "sha-512"))["sha-512"] == hashlib.sha512(b"x").digest()


@given(st.binary(max_size=64))
def test_digest_round_trip(data: bytes) -> None:
    for alg in ("sha-256", "sha-512"):
        assert parse_digest(digest_of(data, alg)) == {
            alg: hashlib.new(alg.replace("-", ""), data).digest()
        }


def test_digest_dictionary_with_two_members_and_missing_padding() -> None:
    both = f"{digest_of(BODY, 'sha-512')}, {DIGEST.rstrip(':').rstrip('=')}:"
    assert set(parse_digest(both)) == {"sha-256", "sha-512"}


def test_unsupported_algorithms_are_ignored_but_one_must_remain() -> None:
    md5 = "md5=:" + base64.b64encode(bytes(16)).decode() + ":"
    assert set(parse_digest(f"{md5}, {DIGEST}")) == {"sha-256"}
    with pytest.raises(ValueError, match="no sha-256"):
        parse_digest(md5)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha-256",
        "sha-256=abc",
        "sha-256=:not base64!:",
        "sha-256=:" + base64.b64encode(bytes(31)).decode() + ":",  # wrong length
        "md5=:" + base64.b64encode(bytes(16)).decode() + ":",  # insecure algorithm
        "SHA-256=:" + base64.b64encode(bytes(32)).decode() + ":",  # keys are lowercase
        DIGEST + ";param=1",
        DIGEST + ",",
    ],
)
def test_bad_digests_raise_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_digest(value)


def test_format_digest_checks_length() -> None:
    with pytest.raises(ValueError):
        format_digest("sha-256", b"short")


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("fetch https://alice:s3cr3t@example.com/x failed", "s3cr3t"),
        ("GET https://cdn.example/x?X-Amz-Signature=deadbeef&a=1", "deadbeef"),
        ("header Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi"),
        ("db password=hunter2 rejected", "hunter2"),
        ('{"api_key": "k-123456"}', "k-123456"),
        ("session_id=abcdef; path=/", "abcdef"),
        ("key " + "f" * 64, "f" * 64),
    ],
)
def test_secrets_are_blanked(message: str, secret: str) -> None:
    cleaned = describe_error(RuntimeError(message))
    assert cleaned is not None
    assert secret not in cleaned.message
    assert "***" in cleaned.message


def test_messages_are_one_short_line() -> None:
    cleaned = describe_error(ValueError("line one\nline\ttwo\x00\x1b[31m" + "x " * 1000))
    assert cleaned is not None
    assert cleaned.error_class == "ValueError"
    assert "\n" not in cleaned.message and "\x00" not in cleaned.message
    assert cleaned.message.startswith("line one line two")
    assert len(cleaned.message) <= model.MAX_ERROR_MESSAGE
    assert cleaned.message.endswith("…")


def test_wrapper_without_message_borrows_its_cause() -> None:
    class ProducerFailed(Exception):
        pass

    try:
        try:
            raise OSError("disk on fire")
        except OSError as exc:
            raise ProducerFailed() from exc
    except ProducerFailed as exc:
        info = describe_error(exc)
    assert info == ErrorInfo("ProducerFailed", "OSError: disk on fire")


def test_error_class_names_are_sanitised() -> None:
    assert ErrorInfo.clean("<bad name>\n", "m").error_class == "badname"
    assert ErrorInfo.clean("", "m").error_class == "Error"


# -- records and transitions ----------------------------------------------------------


def test_started_cleans_path_and_method() -> None:
    rec = TransferRecord.started(TID, "get", "/a/b?token=x#frag", size=None, at=1.0)
    assert (rec.method, rec.path, rec.state, rec.bytes_sent) == ("GET", "/a/b", "streaming", 0)
    long = TransferRecord.started(TID, "GET", "/" + "p" * 5000 + "\r\n", size=None, at=1.0)
    assert len(long.path) == model.MAX_PATH and "\r" not in long.path


@pytest.mark.parametrize(
    ("tid", "method", "size"),
    [
        ("short", "GET", None),
        (TID, "GE T", None),
        (TID, "", None),
        (TID, "X" * 21, None),
        (TID, "GET", -1),
        (TID, "GET", True),
        (TID, "GET", 2**63),
    ],
)
def test_started_rejects_bad_arguments(tid: str, method: str, size: object) -> None:
    with pytest.raises(ConfigError):
        TransferRecord.started(tid, method, "/", size=size, at=0.0)  # type: ignore[arg-type]


def test_progress_is_monotonic_and_ignored_once_final() -> None:
    rec = started().progressed(10).progressed(4)
    assert rec.bytes_sent == 10
    done = rec.finished("failed", 12, error=RuntimeError("boom"), at=101.0)
    assert done.progressed(99) is done


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_every_final_state_is_final(state: str) -> None:
    error = None if state == "completed" else RuntimeError("x")
    done = started().finished(state, 3, error=error, at=101.0)  # type: ignore[arg-type]
    assert done.final and done.ended_at == 101.0
    for again in STATES:
        with pytest.raises(InvalidTransition):
            done.finished(again, 3, at=102.0)


def test_finish_rules() -> None:
    rec = started().progressed(8)
    with pytest.raises(InvalidTransition, match="streaming"):
        rec.finished("streaming", 8, at=1.0)
    with pytest.raises(InvalidTransition, match="went down"):
        rec.finished("failed", 7, at=1.0)
    with pytest.raises(InvalidTransition, match="no error"):
        rec.finished("completed", 8, error=RuntimeError("x"), at=1.0)
    with pytest.raises(InvalidTransition, match="digest"):
        rec.finished("completed", 8, digest="md5=:AAAA:", at=1.0)
    with pytest.raises(InvalidTransition):
        rec.finished("completed", -1, at=1.0)
    assert issubclass(InvalidTransition, LedgerError)
    # an end before the start (clock step) is clamped
    assert rec.finished("failed", 8, at=50.0).ended_at == 100.0


def test_receipt_only_on_final_records() -> None:
    _, receipt = judge(completed(), len(BODY), DIGEST, at=102.0)
    assert receipt is not None
    with pytest.raises(InvalidTransition):
        started().with_receipt(receipt)
    assert completed().with_receipt(receipt).receipt == receipt


# -- verdicts ---------------------------------------------------------------------------


def test_verified_needs_completed_and_same_bytes_and_digest() -> None:
    verdict, receipt = judge(completed(), len(BODY), DIGEST, at=102.0)
    assert verdict.verified and verdict.reason == "verified" and verdict.state == "completed"
    assert receipt is not None and receipt.verified and receipt.received_at == 102.0


@pytest.mark.parametrize(
    ("record", "count", "digest", "reason"),
    [
        (started(), len(BODY), DIGEST, "in_progress"),
        (
            started().finished("client_gone", 3, at=101.0),
            3,
            digest_of(BODY[:3]),
            "not_completed",
        ),
        (completed(), len(BODY) - 1, DIGEST, "size_mismatch"),
        (completed(), len(BODY), digest_of(b"tampered"), "digest_mismatch"),
        (completed(), len(BODY), digest_of(BODY, "sha-512"), "digest_algorithm_mismatch"),
        (
            started().finished("completed", len(BODY), at=101.0),
            len(BODY),
            DIGEST,
            "digest_unavailable",
        ),
        (
            started(size=100).finished("completed", len(BODY), digest=DIGEST, at=101.0),
            len(BODY),
            DIGEST,
            "size_mismatch",
        ),
    ],
)
def test_verdict_reasons(record: TransferRecord, count: int, digest: str, reason: str) -> None:
    verdict, receipt = judge(record, count, digest, at=102.0)
    assert not verdict.verified
    assert verdict.reason == reason
    assert (receipt is None) == (record.state == "streaming")


def test_verdict_json_round_trip() -> None:
    verdict, _ = judge(completed(), len(BODY), DIGEST, at=102.0)
    assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict
    for bad in (
        {},
        [],
        {**verdict.to_json(), "verified": "yes"},
        {**verdict.to_json(), "state": "paused"},
        {**verdict.to_json(), "reason": "because"},
        {**verdict.to_json(), "verified": False},
    ):
        with pytest.raises(ValueError):
            Verdict.from_json(bad)  # type: ignore[arg-type]


def test_judge_rejects_malformed_receipts() -> None:
    with pytest.raises(ValueError):
        judge(completed(), -1, DIGEST, at=1.0)
    with pytest.raises(ValueError):
        judge(completed(), 1, "sha-256=:nope:", at=1.0)


# -- JSON -------------------------------------------------------------------------------


def test_json_round_trip_of_a_full_record() -> None:
    _, receipt = judge(completed(), len(BODY), DIGEST, at=102.5)
    assert receipt is not None
    rec = completed().with_receipt(receipt)
    doc = json.loads(json.dumps(rec.to_json()))
    assert doc["started_at"].endswith("Z") and doc["receipt"]["verified"] is True
    assert TransferRecord.from_json(doc) == rec


@given(
    state=st.sampled_from(sorted(FINAL_STATES)),
    sent=st.integers(0, 2**63 - 1),
    start=st.floats(0, 4e9),
    message=st.text(max_size=300),
)
def test_json_round_trip_property(state: str, sent: int, start: float, message: str) -> None:
    error = None if state == "completed" else ErrorInfo.clean("E", message)
    rec = TransferRecord.started(TID, "GET", "/f", size=None, at=start).finished(
        state,  # type: ignore[arg-type]
        sent,
        error=error,
        at=start + 1.5,
    )
    back = TransferRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back.state == rec.state and back.bytes_sent == sent and back.error == rec.error
    # microsecond precision on the wire
    assert abs(back.started_at - rec.started_at) < 1e-5


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("state"),
        lambda d: d.update(state="paused"),
        lambda d: d.update(id="x"),
        lambda d: d.update(bytes_sent=-1),
        lambda d: d.update(started_at=12),
        lambda d: d.update(started_at="2026-01-01T00:00:00"),
        lambda d: d.update(digest="nope"),
        lambda d: d.update(receipt={"bytes_received": 1}),
    ],
)
def test_from_json_rejects_malformed_records(mutate: object) -> None:
    doc = completed().to_json()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(ValueError):
        TransferRecord.from_json(doc)


def test_state_for_error() -> None:
    from sluicegate.errors import ClientDisconnected, ProducerFailed, StreamTimedOut

    assert state_for_error(ClientDisconnected()) == "client_gone"
    assert state_for_error(ConnectionResetError()) == "client_gone"
    assert state_for_error(StreamTimedOut()) == "timed_out"
    assert state_for_error(ProducerFailed()) == "failed"
    assert state_for_error(KeyboardInterrupt()) == "interrupted"


def test_the_ledger_speaks_the_shared_state_vocabulary() -> None:
    from sluicegate.interfaces import TransferState

    assert model.TransferState is TransferState
    assert tuple(TransferState) == STATES and STATES[0] == "streaming"
    # A name and a member are both accepted, and the record carries the member.
    by_name = started().finished("failed", 3, at=101.0)
    by_member = started().finished(TransferState.FAILED, 3, at=101.0)
    assert by_name == by_member and type(by_name.state) is TransferState
    assert json.loads(json.dumps(by_name.to_json()))["state"] == "failed"
    back = TransferRecord.from_json(by_name.to_json())
    assert back == by_name and type(back.state) is TransferState
    assert type(state_for_error(TimeoutError())) is TransferState
    # Messages name states by value, as before.
    with pytest.raises(InvalidTransition, match=r"already ended as 'failed'$"):
        by_name.finished("completed", 3, at=102.0)
    with pytest.raises(InvalidTransition, match=r"cannot finish a transfer as 'streaming'"):
        started().finished(TransferState.STREAMING, 3, at=102.0)
