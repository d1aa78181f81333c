"""Helpers for the HTML streaming tests: a well-formedness check and a real uvicorn server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import uvicorn

# Elements that never have an end tag (HTML Living Standard, "void elements").
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr"}
)


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.seen: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def assert_well_formed(document: str) -> list[str]:
    """Fail unless ``document`` is one doctype'd html/head/body page whose tags balance.

    Returns the start tags seen, in order, for further checks.
    """
    parser = _Balance()
    parser.feed(document)
    parser.close()
    assert parser.doctype, "no <!doctype html>"
    assert not parser.problems, parser.problems
    assert not parser.stack, f"unclosed: {parser.stack}"
    for tag in ("html", "head", "body"):
        assert parser.seen.count(tag) == 1, f"{parser.seen.count(tag)} <{tag}> elements"
    assert parser.seen[:2] == ["html", "head"], parser.seen[:2]
    return parser.seen


@contextlib.contextmanager
def running(app: Any) -> Iterator[int]:
    """Run ``app`` on uvicorn (127.0.0.1, port 0) in a thread; yield the port; stop it."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
