"""Transfer records, their states and the rules between them. Sans-IO: no clock, no disk.

A *transfer* is one response body on its way to one client. Once the headers are sent a
failing stream cannot change its status, so the ledger keeps what happened and lets the
client compare notes afterwards::

    >>> rec = TransferRecord.started("t" * 22, "GET", "/report.pdf", size=5, at=0.0)
    >>> done = rec.finished("completed", 5, digest=digest_of(b"hello"), at=1.0)
    >>> verdict, receipt = judge(done, 5, digest_of(b"hello"), at=2.0)
    >>> verdict.verified
    True

Every backend validates with these functions, so the rules hold the same everywhere.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeGuard, get_args

from sluicegate.errors import ConfigError, LedgerError
from sluicegate.http.integrity import (
    _CANONICAL_SHA256,
    digest_of,
    format_digest,
    parse_digest,
)
from sluicegate.interfaces import TransferState

__all__ = [
    "FINAL_STATES",
    "STATES",
    "TRANSFER_ID_HEADER",
    "ErrorInfo",
    "InvalidTransition",
    "Receipt",
    "StateName",
    "TransferRecord",
    "TransferState",
    "Verdict",
    "VerdictReason",
    "describe_error",
    "digest_of",
    "format_digest",
    "is_transfer_id",
    "judge",
    "new_transfer_id",
    "parse_digest",
    "state_for_error",
]

# The states are sluicegate.interfaces.TransferState, shared with the engine's metrics
# and the spool: a StrEnum whose members equal (and are stored as) their values.
#: A state by its name: what the ledger's methods accept besides a TransferState member.
StateName = Literal["streaming", "completed", "failed", "client_gone", "timed_out", "interrupted"]
#: Every state, the live one first.
STATES: Final[tuple[TransferState, ...]] = tuple(TransferState)
#: States a transfer ends in. Once there it stays; only a receipt can still be attached.
FINAL_STATES: Final[frozenset[TransferState]] = frozenset(STATES) - {TransferState.STREAMING}

#: Suggested response header that tells the client its transfer id.
TRANSFER_ID_HEADER: Final = "transfer-id"

VerdictReason = Literal[
    "verified",
    "in_progress",
    "not_completed",
    "size_mismatch",
    "digest_mismatch",
    "digest_unavailable",
    "digest_algorithm_mismatch",
]

MAX_METHOD: Final = 20
MAX_PATH: Final = 1024
MAX_ERROR_CLASS: Final = 100
MAX_ERROR_MESSAGE: Final = 200
MAX_BYTES: Final = 2**63 - 1  # what SQLite's INTEGER and every JSON reader hold exactly

_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token, for methods
_COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class InvalidTransition(LedgerError, ValueError):
    """A change the state rules forbid, e.g. finishing a transfer that already ended."""


# -- ids -------------------------------------------------------------------------------


def new_transfer_id() -> str:
    """A fresh URL-safe transfer id: 16 random bytes as 22 base64url characters.

    >>> len(new_transfer_id())
    22
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def is_transfer_id(value: object) -> TypeGuard[str]:
    """True if ``value`` has the shape of a transfer id (it may still be unknown).

    >>> is_transfer_id("AAAAAAAAAAAAAAAAAAAAAA"), is_transfer_id("../etc/passwd")
    (True, False)
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


# -- digests: the helpers live in sluicegate.http.integrity ---------------------------------


def _normal_digest(value: str | None) -> str | None:
    """Validate a digest and return it in canonical form (sorted members, padded base64)."""
    if value is None:
        return None
    if _CANONICAL_SHA256.fullmatch(value):  # the usual case, on the hot path: no decoding
        return value
    parsed = parse_digest(value)
    return ", ".join(format_digest(alg, parsed[alg]) for alg in sorted(parsed))


# -- errors: short, single-line, with secrets blanked out -----------------------------

_REDACTIONS: Final = (
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]*@", re.I), r"\1***@"),
    # query strings often carry tokens and signatures
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*", re.I), r"\1?***"),
    (re.compile(r"\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}", re.I), r"\1 ***"),
    (
        re.compile(
            r"\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|"
            r"access[_-]?key|authorization|auth|cookie|session(?:[_-]?id)?|signature|"
            r"credentials?|private[_-]?key)s?)(['\"]?\s*[=:]\s*)(['\"]?)[^\s,;&'\"]+",
            re.I,
        ),
        r"\1\2\3***",
    ),
    # long opaque blobs: JWTs, keys, hex secrets
    (re.compile(r"[A-Za-z0-9+/_=.-]{40,}"), "***"),
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a transfer did not complete: an exception's class name and a cleaned message."""

    error_class: str
    message: str

    @classmethod
    def clean(cls, error_class: str, message: str) -> ErrorInfo:
        """Build from raw strings: one line, truncated, likely secrets replaced by ``***``."""
        name = re.sub(r"[^A-Za-z0-9_.]", "", error_class)[:MAX_ERROR_CLASS] or "Error"
        return cls(name, _clean_message(message))


def _clean_message(message: str) -> str:
    text = " ".join(_CONTROL_RE.sub(" ", message).split())
    # Cut before redacting too: a huge message is mostly payload, and regexes over
    # megabytes are slow; the second cut bounds what redaction left.
    text = text[: MAX_ERROR_MESSAGE * 4]
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1].rstrip() + "…"
    return text


def describe_error(error: BaseException | ErrorInfo | None) -> ErrorInfo | None:
    """Turn an exception into an :class:`ErrorInfo`, fit to store and show to a client.

    A wrapper without a message of its own (e.g. :class:`~sluicegate.ProducerFailed`)
    borrows its cause's::

        >>> try:
        ...     raise KeyError("password=hunter2")
        ... except KeyError as exc:
        ...     describe_error(exc)
        ErrorInfo(error_class='KeyError', message="'password=***'")
    """
    if error is None or isinstance(error, ErrorInfo):
        return error
    message = str(error)
    cause = error.__cause__ or error.__context__
    if not message and cause is not None:
        message = f"{type(cause).__name__}: {cause}"
    return ErrorInfo.clean(type(error).__name__, message)


def state_for_error(error: BaseException) -> TransferState:
    """The final state of a transfer that ended with ``error``.

    >>> str(state_for_error(BrokenPipeError())), str(state_for_error(TimeoutError()))
    ('client_gone', 'timed_out')
    """
    from sluicegate.errors import ClientDisconnected, StreamTimedOut

    if isinstance(error, ClientDisconnected | ConnectionError):
        return TransferState.CLIENT_GONE
    if isinstance(error, StreamTimedOut | TimeoutError):
        return TransferState.TIMED_OUT
    if isinstance(error, Exception):
        return TransferState.FAILED
    # CancelledError, KeyboardInterrupt, SystemExit: the server is stopping this stream,
    # which is not the stream's fault.
    return TransferState.INTERRUPTED


# -- receipts and verdicts ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The ledger's answer to a client's receipt.

    ``verified`` is true only when the transfer completed and the client got exactly the
    bytes the server sent, with the same digest. ``reason`` says which check decided.
    """

    verified: bool
    state: TransferState
    reason: VerdictReason
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object the receipt endpoint answers with."""
        return {
            "verified": self.verified,
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """Parse the receipt endpoint's answer, e.g. in a client.

        Raises :class:`ValueError` if ``data`` is not a well-formed verdict.
        """
        try:
            verified, state, reason = data["verified"], data["state"], data["reason"]
            detail = data.get("detail", "")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed verdict: {exc!r}") from None
        if not isinstance(verified, bool) or not isinstance(detail, str):
            raise ValueError("malformed verdict")
        if state not in STATES or reason not in get_args(VerdictReason):
            raise ValueError(f"unknown state or reason: {state!r}, {reason!r}")
        if verified != (reason == "verified"):
            raise ValueError("verified and reason disagree")
        return cls(verified, TransferState(state), reason, detail)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the client said it received, when, and the verdict it got."""

    bytes_received: int
    digest: str
    received_at: float
    verified: bool
    reason: VerdictReason

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; times as RFC 3339 UTC strings."""
        return {
            "bytes_received": self.bytes_received,
            "digest": self.digest,
            "received_at": _iso(self.received_at),
            "verified": self.verified,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        """Inverse of :meth:`to_json`; raises :class:`ValueError` on a malformed object."""
        reason = data["reason"]
        if reason not in get_args(VerdictReason):
            raise ValueError(f"unknown verdict reason {reason!r}")
        return cls(
            bytes_received=_count(data["bytes_received"], "bytes_received"),
            digest=str(_normal_digest(str(data["digest"]))),
            received_at=_from_iso(data["received_at"]),
            verified=bool(data["verified"]),
            reason=reason,
        )


def judge(
    record: TransferRecord, bytes_received: int, digest: str, *, at: float
) -> tuple[Verdict, Receipt | None]:
    """Compare a client's receipt with the server's record.

    Returns the verdict and the :class:`Receipt` to attach, or ``None`` while the transfer
    is still streaming: a receipt is only kept once the server's side is final.
    Raises :class:`ValueError` if ``bytes_received`` or ``digest`` is malformed.
    """
    bytes_received = _count(bytes_received, "bytes_received")
    theirs = parse_digest(digest)
    reason: VerdictReason
    if record.state == "streaming":
        reason, detail = "in_progress", "the server is still sending this transfer"
    elif record.state != "completed":
        reason, detail = "not_completed", f"the server recorded the transfer as {record.state}"
    elif record.size is not None and record.size != record.bytes_sent:
        reason = "size_mismatch"
        detail = f"the server sent {record.bytes_sent} of {record.size} bytes"
    elif bytes_received != record.bytes_sent:
        reason = "size_mismatch"
        detail = f"the server sent {record.bytes_sent} bytes, the client got {bytes_received}"
    elif record.digest is None:
        reason, detail = "digest_unavailable", "the server recorded no digest for this transfer"
    else:
        ours = parse_digest(record.digest)
        common = sorted(ours.keys() & theirs.keys())
        if not common:
            reason = "digest_algorithm_mismatch"
            detail = f"the server has {', '.join(sorted(ours))}; the client sent another"
        elif any(ours[alg] != theirs[alg] for alg in common):
            reason, detail = "digest_mismatch", "the client's digest differs from the server's"
        else:
            reason, detail = "verified", "complete and intact"
    verdict = Verdict(reason == "verified", record.state, reason, detail)
    if record.state == "streaming":
        return verdict, None
    canonical = _normal_digest(digest)
    assert canonical is not None
    return verdict, Receipt(bytes_received, canonical, at, verdict.verified, reason)


# -- the record -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One transfer as the ledger knows it. Times are POSIX seconds (``time.time()``).

    Build one with :meth:`started`; move it on with :meth:`progressed`, :meth:`finished`
    and :meth:`with_receipt`, which check the state rules and raise
    :class:`InvalidTransition` when they are broken.
    """

    id: str
    method: str
    path: str
    state: TransferState
    started_at: float
    ended_at: float | None = None
    bytes_sent: int = 0
    size: int | None = None
    digest: str | None = None
    error: ErrorInfo | None = None
    receipt: Receipt | None = None

    @property
    def final(self) -> bool:
        """True once the transfer has ended, whichever way."""
        return self.state != "streaming"

    @classmethod
    def started(
        cls, transfer_id: str, method: str, path: str, *, size: int | None, at: float
    ) -> TransferRecord:
        """A new record in the ``streaming`` state.

        The method must be an HTTP token; the path loses its query string (it may hold
        secrets) and control characters, and is cut to 1024 characters.
        Raises :class:`~sluicegate.ConfigError` on a bad argument.
        """
        if not is_transfer_id(transfer_id):
            raise ConfigError(f"bad transfer id {transfer_id!r}")
        if method in _COMMON_METHODS:
            pass
        elif not isinstance(method, str) or not _TOKEN_RE.fullmatch(method):
            raise ConfigError(f"bad HTTP method {method!r}")
        if len(method) > MAX_METHOD:
            raise ConfigError("HTTP method too long")
        if not isinstance(path, str):
            raise ConfigError("path must be a string")
        if size is not None:
            try:
                size = _count(size, "size")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if path.isprintable() and "?" not in path and "#" not in path:
            clean_path = path[:MAX_PATH]
        else:
            clean_path = _CONTROL_RE.sub("", path.split("?", 1)[0].split("#", 1)[0])[:MAX_PATH]
        return cls(
            transfer_id, method.upper(), clean_path or "/", TransferState.STREAMING, at, size=size
        )

    def progressed(self, bytes_sent: int) -> TransferRecord:
        """The record after ``bytes_sent`` bytes in total went out.

        Counts never go down: a smaller number than recorded is ignored, so reports that
        arrive out of order do no harm. A final record is returned unchanged.
        """
        bytes_sent = _count(bytes_sent, "bytes_sent")
        if self.final or bytes_sent <= self.bytes_sent:
            return self
        return replace(self, bytes_sent=bytes_sent)

    def finished(
        self,
        state: TransferState | StateName,
        bytes_sent: int,
        *,
        digest: str | None = None,
        error: BaseException | ErrorInfo | None = None,
        at: float,
    ) -> TransferRecord:
        """The record in its final ``state``. Raises :class:`InvalidTransition` if not allowed."""
        state = check_finish(self.state, self.bytes_sent, state, bytes_sent, error)
        try:
            canonical = _normal_digest(digest)
        except ValueError as exc:
            raise InvalidTransition(f"bad digest: {exc}") from None
        # The constructor, not dataclasses.replace(): this runs for every response, and
        # replace() looks the fields up each time (≈ 2 µs more).
        return TransferRecord(
            self.id,
            self.method,
            self.path,
            state,
            self.started_at,
            max(at, self.started_at),
            bytes_sent,
            self.size,
            canonical,
            describe_error(error),
            self.receipt,
        )

    def with_receipt(self, receipt: Receipt) -> TransferRecord:
        """The record with the client's receipt attached (replacing an earlier one)."""
        if not self.final:
            raise InvalidTransition("a receipt can only be attached to a finished transfer")
        return replace(self, receipt=receipt)

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``GET /transfers/{id}`` answers with."""
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "ended_at": None if self.ended_at is None else _iso(self.ended_at),
            "bytes_sent": self.bytes_sent,
            "size": self.size,
            "digest": self.digest,
            "error": None
            if self.error is None
            else {"class": self.error.error_class, "message": self.error.message},
            "receipt": None if self.receipt is None else self.receipt.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TransferRecord:
        """Parse what :meth:`to_json` produced, e.g. in a client.

        Raises :class:`ValueError` if ``data`` is not a well-formed record.
        """
        try:
            state = data["state"]
            if state not in STATES:
                raise ValueError(f"unknown state {state!r}")
            state = TransferState(state)
            if not is_transfer_id(data["id"]):
                raise ValueError("bad transfer id")
            error = data.get("error")
            receipt = data.get("receipt")
            size = data.get("size")
            ended = data.get("ended_at")
            return cls(
                id=data["id"],
                method=str(data["method"]),
                path=str(data["path"]),
                state=state,
                started_at=_from_iso(data["started_at"]),
                ended_at=None if ended is None else _from_iso(ended),
                bytes_sent=_count(data["bytes_sent"], "bytes_sent"),
                size=None if size is None else _count(size, "size"),
                digest=_normal_digest(data.get("digest")),
                error=None
                if error is None
                else ErrorInfo(str(error["class"]), str(error["message"])),
                receipt=None if receipt is None else Receipt.from_json(receipt),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed transfer record: {exc!r}") from None


def check_finish(
    current: TransferState,
    bytes_before: int,
    state: TransferState | StateName,
    bytes_sent: int,
    error: BaseException | ErrorInfo | None,
) -> TransferState:
    """``state`` as a member; :class:`InvalidTransition` unless ``current`` may become it."""
    if state not in FINAL_STATES:
        raise InvalidTransition(f"cannot finish a transfer as {_name(state)!r}")
    if current != "streaming":
        raise InvalidTransition(f"the transfer already ended as {_name(current)!r}")
    try:
        bytes_sent = _count(bytes_sent, "bytes_sent")
    except ValueError as exc:
        raise InvalidTransition(str(exc)) from None
    if bytes_sent < bytes_before:
        raise InvalidTransition(f"bytes_sent went down from {bytes_before} to {bytes_sent}")
    if state == "completed" and error is not None:
        raise InvalidTransition("a completed transfer has no error")
    return TransferState(state)


def _name(state: object) -> object:
    """A state as its plain value, for messages (a member's repr names the class)."""
    return str(state) if isinstance(state, TransferState) else state


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if not 0 <= value <= MAX_BYTES:
        raise ValueError(f"{name} must be between 0 and 2**63-1")
    return value


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _from_iso(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError("timestamps must be RFC 3339 strings")
    parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return parsed.timestamp()
