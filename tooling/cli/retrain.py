"""`emotion-monitor retrain`: retraining as a Ray job (training/retrain.py does the work).

Three ways it runs: `--address http://HEAD:8265` submits it to that cluster as a Ray job (this
command again, as the job's entrypoint); inside a Ray job (a drift alert's submission, the
KubeRay RayJob in cluster/kuberay/rayjob-retrain.yaml) it runs the body and `serve deploy`s
to the cluster it runs on; `--local` runs the body in this process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tooling.cli.main import DataRoot, _offline, app
from training.retrain import (
    DEFAULT_SHADOW_SHARE,
    RetrainError,
    RetrainOptions,
    deploy_target,
    figures_table,
    in_ray_job,
    run_retrain,
)

AGENT_WAIT_S = 60.0


def job_entrypoint(opts: RetrainOptions) -> str:
    """This command as a Ray job's entrypoint: the body runs in the job (in-job detection)."""
    args = [
        "emotion-monitor",
        "retrain",
        "--config",
        str(opts.config),
        "--serve-config",
        str(opts.serve_config),
    ]
    args += ["--work-dir", str(opts.work_dir), "--shadow-share", str(opts.shadow_share)]
    for flag, value in (
        ("--data-root", opts.data_root),
        ("--max-steps", opts.max_steps),
        ("--epochs", opts.epochs),
        ("--limit", opts.limit),
        ("--deploy-address", opts.deploy_address),
    ):
        if value is not None:
            args += [flag, str(value)]
    if opts.deploy_address is None:
        args.append("--no-deploy")  # else the job would deploy to the cluster it runs on
    if not opts.track:
        args.append("--no-track")
    return shlex.join(args)


def submit(
    address: str,
    opts: RetrainOptions,
    wait: bool,
    poll_s: float = 5.0,
    runtime_env: dict[str, dict[str, str]] | None = None,
) -> int:
    """Submit the job to a cluster's dashboard; with `wait`, follow it to the end (exit status).
    The cluster's image has the code and `emotion-monitor`: no working_dir is uploaded."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    submission_id = f"retrain-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=job_entrypoint(opts),
                runtime_env=runtime_env,
                submission_id=submission_id,
                metadata={"emotion-monitor": "retrain"},
            )
            break
        except RuntimeError as exc:
            # A head that has just started answers 500 until its job agent is up.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    typer.echo(f"retrain: submitted Ray job {job_id} to {address} (`ray job logs {job_id} --follow`)")
    if not wait:
        return 0
    streamed = follow_log(client, job_id)
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(poll_s)
        status = client.get_job_status(job_id)
    if not streamed:
        typer.echo(client.get_job_logs(job_id)[-4000:])
    typer.echo(f"retrain: job {job_id} {status}")
    return 0 if status == JobStatus.SUCCEEDED else 1


def follow_log(client: Any, job_id: str) -> bool:
    """Echo the job's log as it is written (a full run takes an hour or more); False if the
    stream could not be read, and the caller shows the log's tail at the end instead."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            typer.echo(chunk, nl=False)

    try:
        asyncio.run(tail())
    except Exception as exc:  # any failure of the stream: fall back to polling
        typer.echo(f"retrain: cannot stream the job's log ({exc}); waiting for it to end", err=True)
        return False
    return True


@app.command()
def retrain(
    config: Annotated[Path, typer.Option(help="Versioned training config (YAML).")] = Path(
        "configs/multitask.yaml"
    ),
    address: Annotated[
        str | None,
        typer.Option(help="Ray dashboard (http://HEAD:8265): submit the retraining there as a Ray job."),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the job body in this process.")] = False,
    serve_config: Annotated[
        Path, typer.Option(help="Serve config whose Classifier candidate is set (its shadow starts).")
    ] = Path("serve_config.yaml"),
    deploy_address: Annotated[
        str | None,
        typer.Option(
            help="Ray dashboard to `serve deploy` the edited config to. Default: the --address "
            "cluster, or inside a Ray job the cluster it runs on; otherwise no deploy."
        ),
    ] = None,
    deploy: Annotated[bool, typer.Option(help="`serve deploy` after setting the candidate.")] = True,
    work_dir: Annotated[Path, typer.Option(help="Checkpoints and the artifact, per version.")] = Path(
        "runs/retrain"
    ),
    data_root: DataRoot = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (smoke runs).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many examples per source.")] = None,
    shadow_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of scored posts the candidate shadows.")
    ] = DEFAULT_SHADOW_SHARE,
    track: Annotated[bool, typer.Option(help="Log the run to MLflow, as `train` does.")] = True,
    wait: Annotated[bool, typer.Option(help="With --address: follow the job until it ends.")] = True,
) -> None:
    """Retrain from a versioned config, export, evaluate, push the result to the registry as a
    candidate version and start its shadow (serve_config.yaml's Classifier `candidate`, then
    `serve deploy`). It never promotes: `emotion-monitor model promote` does, behind its gates.

    Exit status: 0 done (or submitted with --no-wait); 1 the Ray job failed; 2 bad input
    (config, registry, Serve config) or no place to run (give --address or --local).
    """
    if address and local:
        raise typer.BadParameter("give --address (a Ray job there) or --local (this process), not both")
    opts = RetrainOptions(
        config=config,
        serve_config=serve_config,
        work_dir=work_dir,
        data_root=data_root,
        max_steps=max_steps,
        epochs=epochs,
        limit=limit,
        shadow_share=shadow_share,
        deploy_address=deploy_target(deploy, deploy_address, address),
        track=track,
    )
    if address:
        raise typer.Exit(submit(address, opts, wait))
    if not (local or in_ray_job()):
        raise _nowhere_to_run()
    run_here(opts)


def _nowhere_to_run() -> typer.Exit:
    """Neither --address nor --local, and not inside a Ray job: say so; exit status 2."""
    typer.echo(
        "retrain: say where it runs: --address http://HEAD:8265 submits it to that Ray cluster "
        "as a job; --local runs it in this process",
        err=True,
    )
    return typer.Exit(2)


def run_here(opts: RetrainOptions) -> None:
    """The job body in this process, its figures and what to do next."""
    _offline()
    try:
        result = run_retrain(opts, typer.echo)
    except RetrainError as exc:
        typer.echo(f"retrain: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in figures_table(result.figures):
        typer.echo(line)
    state = (
        f"is shadowing {result.candidate.shadow_share:.0%} of scored posts on {result.deployed_to}"
        if result.deployed_to
        else f"is set in {opts.serve_config}; `serve deploy` it to start the shadow"
    )
    typer.echo(
        f"retrain: candidate {result.version} {state}. Compare with `emotion-monitor model compare`, "
        f"promote with `emotion-monitor model promote {result.version}`"
    )
