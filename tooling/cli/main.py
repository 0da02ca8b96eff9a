"""The `emotion-monitor` Typer apps, their shared options and the helpers every command group uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="emotion-monitor: train, evaluate and serve an emotion classifier for public posts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="PostgreSQL history: schema migrations.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print tables (medians, side by side).", no_args_is_help=True)
model_app = typer.Typer(help="Model registry: push, pull and list artifact versions.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")
cluster_app = typer.Typer(
    help="A multi-node Ray cluster on this machine (head + workers, each its own `ray start`).",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")
watch_app = typer.Typer(help="Watchlists: keywords the service monitors over time.", no_args_is_help=True)
app.add_typer(watch_app, name="watch")
ServiceUrl = Annotated[str, typer.Option(help="Service base URL.", envvar="EMOTION_MONITOR_URL")]
DEFAULT_URL = "http://127.0.0.1:8000"
ClusterRoot = Annotated[Path, typer.Option(help="Where the cluster keeps its state and node logs.")]


def _offline() -> None:
    # The base model is on disk; never let transformers reach for the hub here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


DataRoot = Annotated[
    Path | None,
    typer.Option(help="Root of the data sets named in the config (default ../shared/data)."),
]


TrackOption = Annotated[
    bool, typer.Option(help="Log the run to MLflow (EMOTION_MONITOR_TRACKING__URI; runs/mlflow.db).")
]


def _call(method: str, url: str, path: str, timeout: float = 60.0, **kwargs: Any) -> Any:
    """One API call with the API key (EMOTION_MONITOR_HTTP__API_KEY) if set; exits with the error."""
    import httpx

    from serve_app.config.settings import get_settings, secret

    headers = {"X-API-Key": key} if (key := secret(get_settings().http.api_key)) else {}
    try:
        r = httpx.request(method, f"{url.rstrip('/')}{path}", headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc} (is the service running? `make run`)", err=True)
        raise typer.Exit(2) from None
    if r.status_code >= 400:
        typer.echo(f"HTTP {r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    return r.json() if r.content else None


def _emit_report(report: str, out: Path | None) -> None:
    """Print a benchmark report, and write it to `out` too when given."""
    typer.echo(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")
