"""``modelserve serve``: run the HTTP service."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["register"]


@click.command()
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (default 8000).")
@click.option("--workers", "-w", type=int, help="Worker processes (default: one per core).")
@click.option("--max-requests", type=int, help="Recycle a worker after this many requests.")
@click.option("--max-requests-jitter", type=int, help="Random extra requests per worker.")
@click.option("--graceful-timeout", type=float, help="Seconds to drain on SIGTERM.")
@click.option("--access-log/--no-access-log", default=None, help="One JSON line per request.")
@click.pass_obj
def serve(obj: Any, /, **flags: Any) -> None:
    """Serve the models of modelserve.toml over HTTP until SIGTERM."""
    from modelserve.server import serve as run_server

    settings = obj.settings(**{f"server.{key}": value for key, value in flags.items()})
    raise SystemExit(run_server(settings))


def register(group: click.Group) -> None:
    group.add_command(serve)
