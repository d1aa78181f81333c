"""curl -C -, wget -c and aria2c -x8 -s8 resume downloads the server broke on purpose.

Each first transfer is cut server-side at a seeded random byte (CutOnce sends that
many body bytes and drops the connection); the client then resumes with Range and
must end with a byte-identical file. The request log proves the resume asked for
the bytes from the cut point on, instead of downloading everything again.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from files_apps import Site
from files_support import CutOnce

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("curl", "wget", "aria2c")),
    reason="curl, wget and aria2c are needed",
)

CLIENT_TIMEOUT = 60


def run(*argv: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=CLIENT_TIMEOUT
    )
    if ok:
        assert result.returncode == 0, (argv, result.returncode, result.stderr[-2000:])
    else:
        assert result.returncode != 0, (argv, "the first transfer was not cut")
    return result


def _serve(
    server: tuple[str, Any], tmp_path: Path, target: str, seed: str
) -> tuple[str, Site, CutOnce, bytes]:
    base, switch = server
    site = Site(tmp_path)
    if target == "/file":
        expected = site.file.read_bytes()
    elif target == "/zip":
        expected = b"".join(site.zip().open(0))
    else:
        expected = site.live_data
    # aria2c splits in 1 MiB pieces: cut inside the first so the cut connection is real.
    cut_at = random.Random(seed).randrange(1, min(len(expected), 1 << 20))
    cutter = CutOnce(site, cut_at, path_prefix=target)
    switch.app = cutter
    return base, site, cutter, expected


def _resumed_at(cutter: CutOnce, cut_at: int, slack: int = 0) -> bool:
    """Some request asked for a range starting at the cut (``slack`` bytes before it at most)."""
    starts = [
        int(r.removeprefix("bytes=").split("-")[0])
        for _, _, r in cutter.requests
        if r is not None and r.startswith("bytes=") and r[6:7].isdigit()
    ]
    return any(cut_at - slack <= start <= cut_at and start > 0 for start in starts)


def _check(out: Path, expected: bytes, target: str) -> None:
    assert out.read_bytes() == expected
    if target == "/zip":
        with zipfile.ZipFile(out) as archive:
            assert archive.testzip() is None
        if shutil.which("unzip"):
            run("unzip", "-tq", out)


@pytest.mark.parametrize("target", ["/file", "/zip"])
def test_curl_resumes(server: Any, tmp_path: Path, target: str) -> None:
    base, _, cutter, expected = _serve(server, tmp_path, target, f"curl{target}")
    out = tmp_path / "out"
    first = run("curl", "-sS", "-o", out, base + target, ok=False)
    assert first.returncode == 18 and cutter.fired  # 18: partial file
    assert out.stat().st_size == cutter.cut_at
    run("curl", "-sS", "-C", "-", "-o", out, base + target)
    _check(out, expected, target)
    assert _resumed_at(cutter, cutter.cut_at)


@pytest.mark.parametrize("target", ["/file", "/zip"])
def test_wget_resumes(server: Any, tmp_path: Path, target: str) -> None:
    base, _, cutter, expected = _serve(server, tmp_path, target, f"wget{target}")
    out = tmp_path / "out"
    run("wget", "-q", "--tries=1", "-O", out, base + target, ok=False)
    assert cutter.fired and out.stat().st_size == cutter.cut_at
    run("wget", "-q", "-c", "--tries=1", "-O", out, base + target)
    _check(out, expected, target)
    assert _resumed_at(cutter, cutter.cut_at)


@pytest.mark.parametrize("target", ["/file", "/zip"])
def test_aria2c_resumes(server: Any, tmp_path: Path, target: str) -> None:
    base, _, cutter, expected = _serve(server, tmp_path, target, f"aria2c{target}")
    aria = ("aria2c", "-q", "-x8", "-s8", "--min-split-size=1M", "--retry-wait=0")
    run(*aria, "--max-tries=5", "-d", tmp_path, "-o", "out", base + target)
    assert cutter.fired
    _check(tmp_path / "out", expected, target)
    # The cut connection's piece was resumed from the cut, on a new connection.
    assert _resumed_at(cutter, cutter.cut_at)
    assert sum(1 for _, _, r in cutter.requests if r is not None) >= 2  # really split


def _resume_url(site: Site) -> str:
    (transfer,) = site.spool.transfers()
    return transfer.resume_url


def test_curl_resumes_spooled_live_source(server: Any, tmp_path: Path) -> None:
    base, site, cutter, expected = _serve(server, tmp_path, "/live", "curl-live")
    out, head = tmp_path / "out", tmp_path / "head"
    run("curl", "-sS", "-D", head, "-o", out, base + "/live", ok=False)
    assert cutter.fired and out.stat().st_size == cutter.cut_at
    headers = dict(
        line.split(": ", 1) for line in head.read_text().splitlines()[1:] if ": " in line
    )
    location = headers["content-location"]
    assert location == _resume_url(site) == f"/spool/{headers['transfer-id']}"
    run("curl", "-sS", "-C", "-", "-o", out, base + location)
    assert out.read_bytes() == expected
    assert _resumed_at(cutter, cutter.cut_at)


def test_wget_resumes_spooled_live_source(server: Any, tmp_path: Path) -> None:
    base, site, cutter, expected = _serve(server, tmp_path, "/live-sized", "wget-live")
    out = tmp_path / "out"
    first = run("wget", "-S", "--tries=1", "-O", out, base + "/live-sized", ok=False)
    assert cutter.fired and out.stat().st_size == cutter.cut_at
    assert f"content-location: {_resume_url(site)}".lower() in first.stderr.lower()
    run("wget", "-q", "-c", "--tries=1", "-O", out, base + _resume_url(site))
    assert out.read_bytes() == expected
    assert _resumed_at(cutter, cutter.cut_at)


def test_aria2c_resumes_spooled_live_source(server: Any, tmp_path: Path) -> None:
    base, site, cutter, expected = _serve(server, tmp_path, "/live", "aria2c-live")
    run("aria2c", "-q", "--max-tries=1", "-d", tmp_path, "-o", "out", base + "/live", ok=False)
    assert cutter.fired and (tmp_path / "out").stat().st_size == cutter.cut_at
    aria = ("aria2c", "-q", "-c", "-x8", "-s8", "--min-split-size=1M", "--retry-wait=0")
    run(*aria, "-d", tmp_path, "-o", "out", base + _resume_url(site))
    assert (tmp_path / "out").read_bytes() == expected
    # aria2c -c restarts at its 16 KiB block boundary before the end of the file.
    assert _resumed_at(cutter, cutter.cut_at, slack=16 * 1024), cutter.requests
