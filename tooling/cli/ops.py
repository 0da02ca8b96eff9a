"""Running the service: `emotion-monitor run`, `loadtest`, `score-file`, `sync` and `db migrate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from serve_app.domain.tasks import DEFAULT_TASK
from tooling.cli.main import (
    app,
    db_app,
)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Serve config (import_path + args).")] = Path(
        "serve_config.yaml"
    ),
    stop_timeout: Annotated[
        float, typer.Option(help="Seconds a stop may take before the service is killed.")
    ] = 60.0,
    keep_services: Annotated[
        bool, typer.Option(help="Leave the embedded Redis and PostgreSQL running after the stop.")
    ] = False,
) -> None:
    """Run the service (`serve run CONFIG`) and stop it gracefully on SIGTERM or SIGINT.

    A stop drains in-flight requests, hands held history records over, stops the embedded
    Redis and PostgreSQL (unless --keep-services) and exits 0 within --stop-timeout;
    `docker stop`, `kubectl delete` and `systemctl stop` send SIGTERM.
    """
    import logging
    import shutil
    import sys

    from serve_app.config.settings import Settings
    from serve_app.runtime.embedded import stop_embedded
    from serve_app.runtime.graceful import run_gracefully

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    serve = shutil.which("serve") or str(Path(sys.executable).with_name("serve"))
    rc = run_gracefully([serve, "run", str(config)], stop_timeout)
    settings = Settings()
    if settings.stores.embedded and not keep_services:
        # After Ray is gone: its supervisor actor can no longer restart them.
        stop_embedded(settings.stores.data_dir)
        logging.getLogger("emotion_monitor.run").warning(
            "embedded servers in %s stopped", settings.stores.data_dir
        )
    raise typer.Exit(rc)


@app.command()
def loadtest(
    host: Annotated[str, typer.Option(help="Service base URL.")] = "http://127.0.0.1:8000",
    users: Annotated[int, typer.Option(help="Concurrent Locust users.")] = 32,
    duration: Annotated[int, typer.Option(help="Seconds to run (the run always stops).")] = 60,
    spawn_rate: Annotated[float | None, typer.Option(help="Users started per second.")] = None,
    user_class: Annotated[list[str] | None, typer.Option(help="Only these Locust user classes.")] = None,
    shape: Annotated[str | None, typer.Option(help="'burst': ramp up, hold, ramp down.")] = None,
    out: Annotated[Path, typer.Option(help="Where Locust's CSVs and HTML report go.")] = Path("runs/locust"),
) -> None:
    """Run Locust headless against a running service and print RPS and latency percentiles."""
    from tooling.loadtest import run_locust, summary_table

    rows = run_locust(host, users, duration, out, spawn_rate, user_class, shape)
    typer.echo(summary_table(rows))
    typer.echo(f"CSVs: {out}/locust_*.csv  report: {out}/report.html")
    if any(r["name"] == "all" and r["failures"] for r in rows):
        raise typer.Exit(1)


@app.command("score-file")
def score_file_cmd(
    input: Annotated[Path, typer.Option(help="JSONL with a text field per line.")],
    output: Annotated[Path, typer.Option(help="Where to write the rows, each with its prediction.")],
    app_name: Annotated[str, typer.Option(help="Serve application name.")] = "emotion-monitor",
    field: Annotated[str, typer.Option(help="Name of the text field.")] = "text",
    chunk: Annotated[int, typer.Option(help="Texts per handle call.")] = 64,
    task: Annotated[str, typer.Option(help="Task to classify by; the prediction goes under its name.")] = (
        DEFAULT_TASK
    ),
) -> None:
    """Score a JSONL file through a running Serve app by DeploymentHandle (a Ray job)."""
    from serve_app.flow.jobs import score_file

    n = score_file(input, output, app_name=app_name, chunk=chunk, field=field, task=task)
    typer.echo(f"scored {n} rows -> {output}")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations not yet applied (EMOTION_MONITOR_STORES__POSTGRES_URL or embedded)."""
    from serve_app.config.settings import get_settings
    from serve_app.runtime.embedded import resolve_infrastructure
    from serve_app.stores.history_sql import migrate

    infra = resolve_infrastructure(get_settings().stores)
    if infra.postgres_url is None:
        typer.echo(
            "no PostgreSQL: set EMOTION_MONITOR_STORES__POSTGRES_URL or "
            "EMOTION_MONITOR_STORES__EMBEDDED=true",
            err=True,
        )
        raise typer.Exit(2)
    applied = migrate(infra.postgres_url)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@app.command()
def sync(
    now: Annotated[bool, typer.Option("--now", help="Run one full pass regardless of CPU.")] = False,
    address: Annotated[str, typer.Option(help="Ray cluster address.")] = "auto",
    app_name: Annotated[str, typer.Option(help="Serve application name.")] = "emotion-monitor",
) -> None:
    """Show the history sync's state; with --now, force a pass (recovery + drain)."""
    import ray

    from deployments.actor_loops import get_actor, sync_actor_name
    from serve_app.domain.schemas import SyncStatus

    ray.init(address=address, log_to_driver=False)
    try:
        actor = get_actor(sync_actor_name(app_name))
    except ValueError:
        typer.echo("the sync actor is not running (start the app with PostgreSQL configured)", err=True)
        raise typer.Exit(2) from None
    state = ray.get(actor.sync_now.remote() if now else actor.status.remote())
    # The actor's own fields, as printed before the status was typed (the ingress adds the rest).
    fields = SyncStatus.model_validate(state).model_dump(mode="json", exclude={"unsaved_in_ingress"})
    typer.echo(json.dumps(fields, indent=2))
