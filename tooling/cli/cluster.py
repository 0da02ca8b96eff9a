"""`emotion-monitor cluster up | config | status | kill | down`: a multi-node Ray cluster here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.cli.main import (
    ClusterRoot,
    cluster_app,
)


@cluster_app.command("up")
def cluster_up(
    root: ClusterRoot = Path(".emotion-monitor/cluster"),
    workers: Annotated[int, typer.Option(min=0, max=8, help="Worker nodes.")] = 2,
    head_cpus: Annotated[int, typer.Option(min=1, help="Logical CPUs of the head.")] = 2,
    worker_cpus: Annotated[int, typer.Option(min=1, help="Logical CPUs of each worker.")] = 2,
) -> None:
    """Start a head (resource `frontend`) and workers (resource `classifier: 2` each).

    Then deploy with `serve deploy <config> --address <dashboard>`, pinning the app with
    the args `frontend_resources: {frontend: 1}` and `classifier_resources: {classifier: 1}`.
    """
    from tooling.local_cluster import LocalCluster

    st = LocalCluster(root).up(workers=workers, head_cpus=head_cpus, worker_cpus=worker_cpus)
    typer.echo(f"cluster up: {len(st.nodes)} nodes; RAY_ADDRESS={st.address}; dashboard {st.dashboard_url}")


@cluster_app.command("config")
def cluster_config(
    out: Annotated[Path, typer.Option(help="Where to write the derived Serve config.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="ARG=VALUE for the app's args (VALUE is YAML), repeatable."),
    ] = None,
    src: Annotated[Path, typer.Option(help="The Serve config to start from.")] = Path("serve_config.yaml"),
    http_host: Annotated[
        str | None,
        typer.Option(help="Bind address of Serve's HTTP proxy (e.g. 0.0.0.0 inside a container)."),
    ] = None,
) -> None:
    """Write SRC with some app args changed, validated: e.g. `--set predict_in_ingress=false`."""
    import yaml

    from deployments.app import derive_serve_config

    overrides: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            typer.echo(f"--set takes ARG=VALUE, got {item!r}", err=True)
            raise typer.Exit(2)
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        derived = derive_serve_config(yaml.safe_load(src.read_text()), overrides)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        typer.echo(f"invalid app args: {exc}", err=True)
        raise typer.Exit(2) from None
    if http_host:
        derived.setdefault("http_options", {})["host"] = http_host
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(derived, sort_keys=False))
    typer.echo(f"wrote {out}")


@cluster_app.command("status")
def cluster_status(root: ClusterRoot = Path(".emotion-monitor/cluster")) -> None:
    """Nodes, their resources and how many the cluster sees alive."""
    from tooling.local_cluster import LocalCluster

    typer.echo(json.dumps(LocalCluster(root).status(), indent=2))


@cluster_app.command("kill")
def cluster_kill(
    node: Annotated[str, typer.Argument(help="Node name, e.g. worker2.")],
    root: ClusterRoot = Path(".emotion-monitor/cluster"),
) -> None:
    """Crash one node (SIGKILL to all its processes): Serve moves its replicas."""
    from tooling.local_cluster import LocalCluster

    typer.echo(f"killed {LocalCluster(root).kill(node)} processes of {node}")


@cluster_app.command("down")
def cluster_down(root: ClusterRoot = Path(".emotion-monitor/cluster")) -> None:
    """Stop every node of the cluster and remove its temp dirs."""
    from tooling.local_cluster import LocalCluster

    LocalCluster(root).down()
    typer.echo("cluster down")


# Sub-commands that live in modules of their own register on `app` when imported here
# (after `app` and its sub-apps exist). One line per module.
