"""Path safety of StaticDirectory: sans-IO rules, then resolution against a real tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from files_support import call

from sluicegate.errors import ConfigError
from sluicegate.http.files import StaticDirectory, safe_segments


@pytest.mark.parametrize(
    "path",
    [
        "/../secret",
        "/a/../../secret",
        "/a/..",
        "/..",
        "/.",
        "/a/./b",
        "//etc/passwd",
        "/a//b",
        "/a/",
        "/",
        "",
        "etc/passwd",
        "/a\x00b",
        "/a\\..\\b",
        "/%2e%2e/secret",  # the raw %252e%252e, decoded once: a second decoding makes ..
        "/a%2f..%2fb",
        "/.env",
        "/.git/config",
        "/a/.hidden",
    ],
)
def test_refused(path: str) -> None:
    assert safe_segments(path) is None


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/a.txt", ("a.txt",)),
        ("/docs/a b.txt", ("docs", "a b.txt")),
        ("/docs/r\u00e9sum\u00e9.pdf", ("docs", "r\u00e9sum\u00e9.pdf")),
        ("/a..b", ("a..b",)),
        ("/...", None),  # starts with a dot: a dotfile
        ("/100%.txt", ("100%.txt",)),
        ("/%252e%252e", ("%252e%252e",)),  # decodes to %2e%2e: a name, not a step up
    ],
)
def test_allowed(path: str, segments: tuple[str, ...] | None) -> None:
    assert safe_segments(path) == segments


def test_dotfiles_opt_in() -> None:
    assert safe_segments("/.well-known/x", dotfiles=True) == (".well-known", "x")
    assert safe_segments("/../x", dotfiles=True) is None


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"beta")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (root / "link-out").symlink_to(outside)
    (root / "dir-out").symlink_to(tmp_path)
    (root / "link-in").symlink_to(root / "sub" / "b.txt")
    os.mkfifo(root / "fifo")
    return root, outside


def test_resolve(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    static = StaticDirectory(root)
    real_root = os.path.realpath(root)
    assert static.resolve("/a.txt") == os.path.join(real_root, "a.txt")
    assert static.resolve("/link-in") == os.path.join(real_root, "sub", "b.txt")
    assert static.resolve("/link-out") is None
    assert static.resolve("/dir-out/secret.txt") is None
    assert static.resolve("/../secret.txt") is None


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/a.txt", 200, b"alpha"),
        ("/sub/b.txt", 200, b"beta"),
        ("/link-in", 200, b"beta"),
        ("/link-out", 404, None),
        ("/dir-out/secret.txt", 404, None),
        ("/sub", 404, None),
        ("/fifo", 404, None),  # opened without blocking, refused as not regular
        ("/missing", 404, None),
        ("/../secret.txt", 404, None),
    ],
)
async def test_static_app(
    tree: tuple[Path, Path], path: str, status: int, body: bytes | None
) -> None:
    got_status, headers, got_body, _ = await call(StaticDirectory(tree[0]), path=path)
    assert got_status == status
    if body is not None:
        assert got_body == body
    else:
        assert headers["content-type"] == "application/problem+json"
        assert b"secret" not in got_body


async def test_static_method_and_root(tree: tuple[Path, Path]) -> None:
    status, headers, _, _ = await call(StaticDirectory(tree[0]), method="POST", path="/a.txt")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    with pytest.raises(ConfigError):
        StaticDirectory(tree[0] / "a.txt")


async def test_static_mounted_root_path(tree: tuple[Path, Path]) -> None:
    app = StaticDirectory(tree[0])

    async def mounted(scope, receive, send):  # type: ignore[no-untyped-def]
        await app({**scope, "root_path": "/static", "path": "/static/a.txt"}, receive, send)

    status, _, body, _ = await call(mounted)
    assert (status, body) == (200, b"alpha")
