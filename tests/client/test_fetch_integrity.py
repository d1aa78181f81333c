"""fetch on real sockets: completeness, resume, digests from header, trailer and ledger."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from client_servers import FileApp, RawChunked, sha256_field

from sluicegate.client import ExitCode, fetch
from sluicegate.client.errors import DigestMismatch, IncompleteTransfer

DATA = random.Random(7).randbytes(300_000)


async def test_whole_download_is_written_and_verified_from_header(server, tmp_path: Path) -> None:
    url = server(FileApp(DATA))
    out = tmp_path / "f.bin"
    result = await fetch(url + "/f", output=out, verify=True)
    assert result.complete and result.verified is True
    assert result.digest_source == "header"
    assert result.digest == sha256_field(DATA)
    assert out.read_bytes() == DATA
    assert not (tmp_path / "f.bin.part").exists()
    assert not (tmp_path / "f.bin.part.json").exists()


async def test_truncated_download_leaves_only_the_part(server, tmp_path: Path) -> None:
    app = FileApp(DATA, cut_at=123_457)
    url = server(app)
    out = tmp_path / "f.bin"
    result = await fetch(url + "/f", output=out, check=False)
    assert result.exit_code == ExitCode.INCOMPLETE
    assert not result.complete
    assert not out.exists()
    assert (tmp_path / "f.bin.part").read_bytes() == DATA[:123_457]
    app.cut_at = 1000
    with pytest.raises(IncompleteTransfer):
        await fetch(url + "/f", output=out)
    assert not out.exists()


async def test_resume_after_a_cut_at_a_random_offset(server, tmp_path: Path) -> None:
    cut = random.Random().randrange(1, len(DATA) - 1)
    app = FileApp(DATA, cut_at=cut)
    url = server(app)
    out = tmp_path / "f.bin"
    first = await fetch(url + "/f", output=out, check=False)
    assert first.exit_code == ExitCode.INCOMPLETE, cut
    result = await fetch(url + "/f", output=out, resume=True, verify=True)
    assert app.requests[-1]["range"] == f"bytes={cut}-"
    assert app.requests[-1]["if-range"] == '"v1"'
    assert result.status == 206 and result.offset == cut
    assert result.bytes_received == len(DATA) - cut
    # Repr-Digest covers the whole file, so the existing part was hashed too.
    assert result.verified is True
    assert out.read_bytes() == DATA


async def test_resume_starts_over_when_the_validator_changed(server, tmp_path: Path) -> None:
    app = FileApp(DATA, cut_at=50_000)
    url = server(app)
    out = tmp_path / "f.bin"
    await fetch(url + "/f", output=out, check=False)
    new = DATA[::-1]
    app.data, app.etag = new, '"v2"'
    result = await fetch(url + "/f", output=out, resume=True, verify=True)
    assert result.status == 200 and result.offset == 0
    assert out.read_bytes() == new


async def test_resume_of_a_complete_part_gets_416_and_finishes(server, tmp_path: Path) -> None:
    url = server(FileApp(DATA))
    out = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(DATA)
    (tmp_path / "f.bin.part.json").write_text(f'{{"url": "{url}/f", "etag": "\\"v1\\""}}')
    result = await fetch(url + "/f", output=out, resume=True)
    assert result.status == 416 and result.complete
    assert out.read_bytes() == DATA


async def test_resume_without_a_validator_starts_over(server, tmp_path: Path) -> None:
    app = FileApp(DATA)
    url = server(app)
    out = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"garbage")
    result = await fetch(url + "/f", output=out, resume=True)
    assert "range" not in app.requests[-1]
    assert result.offset == 0 and out.read_bytes() == DATA


async def test_digest_mismatch_is_reported_and_not_renamed(server, tmp_path: Path) -> None:
    url = server(FileApp(DATA, digest="wrong"))
    out = tmp_path / "f.bin"
    result = await fetch(url + "/f", output=out, verify=True, check=False)
    assert result.complete and result.verified is False
    assert result.exit_code == ExitCode.DIGEST_MISMATCH
    assert not out.exists()
    with pytest.raises(DigestMismatch):
        await fetch(url + "/f", output=out, verify=True)


async def test_verify_without_any_digest_says_so(server) -> None:
    url = server(FileApp(DATA, digest=None))
    result = await fetch(url + "/f", verify=True)
    assert result.complete and result.verified is None
    assert any("no digest" in note for note in result.notes)


async def test_digest_from_a_chunked_trailer(raw_server) -> None:
    body = random.Random(3).randbytes(50_000)
    url = await raw_server(RawChunked(body, "Content-Digest: " + sha256_field(body)))
    result = await fetch(url + "/", verify=True)
    assert result.complete and result.verified is True
    assert result.digest_source == "trailer"
    assert ("content-digest", sha256_field(body)) in result.trailers


async def test_wrong_trailer_digest_is_a_mismatch(raw_server) -> None:
    body = b"a" * 10_000
    url = await raw_server(RawChunked(body, "Content-Digest: " + sha256_field(b"b")))
    result = await fetch(url + "/", verify=True, check=False)
    assert result.exit_code == ExitCode.DIGEST_MISMATCH


async def test_chunked_body_without_terminator_is_incomplete(raw_server) -> None:
    url = await raw_server(RawChunked(b"a" * 10_000, "X: y", cut=True))
    result = await fetch(url + "/", verify=True, check=False)
    assert result.exit_code == ExitCode.INCOMPLETE and not result.complete


async def test_ledger_digest_and_receipt(server) -> None:
    app = FileApp(DATA, digest=None, ledger=True)
    url = server(app)
    result = await fetch(url + "/f", verify=True)
    assert result.verified is True and result.digest_source == "ledger"
    assert app.receipts == [{"bytes_received": len(DATA), "digest": sha256_field(DATA)}]


async def test_ledger_with_a_different_digest_is_a_mismatch(server) -> None:
    app = FileApp(DATA, digest=None, ledger=True, ledger_digest=sha256_field(b"nope"))
    url = server(app)
    result = await fetch(url + "/f", verify=True, check=False)
    assert result.verified is False and result.exit_code == ExitCode.DIGEST_MISMATCH


async def test_http_error_status_and_connection_refused(server) -> None:
    async def not_found(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"nope"})

    url = server(not_found)
    result = await fetch(url + "/x", check=False)
    assert result.exit_code == ExitCode.HTTP_STATUS and result.status == 404
    refused = await fetch("http://127.0.0.1:1/", check=False, timeout=5)
    assert refused.exit_code == ExitCode.CONNECTION
