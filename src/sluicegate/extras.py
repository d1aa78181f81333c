"""Which extra brings which optional dependency, for a one-line error when one is missing.

``pip install sluicegate`` brings what the engine and the responses need; each tool's
dependencies come with an extra (``[server]``, ``[client]``, ``[doctor]``, ...). This
module is stdlib only, so the ``sluicegate`` entry point can load it, and say which
extra to install, even when click itself is missing.

>>> missing_extra_message("uvicorn", ["serve", "--port", "0"])
"sluicegate serve needs uvicorn, which is not installed: pip install 'sluicegate[server]'"
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMMAND_EXTRAS", "MODULE_EXTRAS", "missing_extra_message"]

#: top-level module -> the extra that brings it (as in pyproject.toml)
MODULE_EXTRAS: dict[str, str] = {
    "click": "server",
    "uvicorn": "server",
    "httpx": "client",
    "h11": "client",
    "rich": "client",
    "psutil": "doctor",
    "plotly": "doctor",
    "redis": "redis",
    "opentelemetry": "otel",
    "prometheus_client": "prometheus",
}

#: subcommand -> its extra, and the modules that extra brings
COMMAND_EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "serve": ("server", frozenset({"click", "uvicorn"})),
    "fetch": ("client", frozenset({"click", "httpx", "h11", "rich"})),
    "swarm": ("client", frozenset({"click", "httpx", "h11", "rich"})),
    "doctor": ("doctor", frozenset({"click", "rich", "psutil", "plotly"})),
    "demo": ("demo", frozenset({"click", "uvicorn", "httpx", "h11", "rich", "psutil", "plotly"})),
}


def missing_extra_message(module: str | None, argv: Sequence[str]) -> str | None:
    """The one-line error for a missing optional ``module``; None if it is not optional.

    ``argv`` (without the program name) picks the subcommand, whose extra is named when
    it brings ``module``; otherwise the extra that brings ``module`` is.
    """
    top = (module or "").partition(".")[0]
    extra = MODULE_EXTRAS.get(top)
    if extra is None:
        return None
    command = next((a for a in argv if not a.startswith("-")), None)
    known = COMMAND_EXTRAS.get(command or "")
    if known is not None and top in known[1]:
        extra = known[0]
    who = f"sluicegate {command}" if known is not None else "sluicegate"
    return f"{who} needs {top}, which is not installed: pip install 'sluicegate[{extra}]'"
