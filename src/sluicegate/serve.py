"""``sluicegate serve``: run an app (the examples by default) on uvicorn."""

from __future__ import annotations

import importlib
from typing import Any

import click


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and return the attribute, with one-line errors."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="--app")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {module_name!r}: {exc}"
        raise click.BadParameter(msg, param_hint="--app") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(
            f"module {module_name!r} has no attribute {attr!r}", param_hint="--app"
        ) from None


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--app",
    "app_spec",
    default="sluicegate.examples:app",
    show_default=True,
    help="The ASGI app to serve, as module:attribute.",
)
@click.option("--log-level", default="info", show_default=True)
def serve_command(host: str, port: int, app_spec: str, log_level: str) -> None:
    """Serve an ASGI app on uvicorn (by default the examples: /hello, /download)."""
    import uvicorn

    app = load_app(app_spec)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
