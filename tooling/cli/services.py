"""`emotion-monitor services status|stop`: the embedded Redis and PostgreSQL under the data dir."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import app

services_app = typer.Typer(
    help="The embedded Redis and PostgreSQL that `make run` starts when no URL is configured.",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")

DataDir = Annotated[
    Path | None,
    typer.Option(help="Their data dir; default: EMOTION_MONITOR_STORES__DATA_DIR (.emotion-monitor)."),
]


def _data_dir(given: Path | None) -> Path:
    from serve_app.config.settings import Settings

    return given if given is not None else Settings().stores.data_dir


@services_app.command("status")
def services_status(data_dir: DataDir = None) -> None:
    """Say which embedded servers run (pid) under the data dir; JSON."""
    from serve_app.runtime.embedded import embedded_status

    typer.echo(json.dumps(asdict(embedded_status(_data_dir(data_dir))), indent=2))


@services_app.command("stop")
def services_stop(data_dir: DataDir = None) -> None:
    """Stop the embedded servers under the data dir (their data stays)."""
    from serve_app.runtime.embedded import embedded_status, stop_embedded

    base = _data_dir(data_dir)
    before = embedded_status(base)
    stop_embedded(base)
    after = embedded_status(base)
    if after.redis_pid or after.postgres_pid:
        typer.echo(f"still running: {json.dumps(asdict(after))}", err=True)
        raise typer.Exit(1)
    stopped = [n for n, pid in (("redis", before.redis_pid), ("postgres", before.postgres_pid)) if pid]
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'} ({after.data_dir})")
