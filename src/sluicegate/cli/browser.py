"""Headless Chromium, as the demo and the tests run it: one place for the flags.

Without the background-networking flags, Chromium spends its start-up on connections
a closed network refuses; a fresh ``--user-data-dir`` keeps runs independent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """A headless-capable Chromium or Chrome on PATH, if any."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def headless_args(browser: str, profile: str | Path) -> list[str]:
    """The command line start for a quiet, sandbox-free headless run with its own profile."""
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
