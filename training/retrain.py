"""Retraining as a job: train from a versioned config, export, evaluate, push the artifact as a
candidate registry version and start its shadow (serve_config.yaml's Classifier `candidate`).

It never promotes: the registry's LATEST and the user_config's `model_versions` stay as they
were; `emotion-monitor model promote` (behind its gates) is the only way a candidate goes live.
`emotion-monitor retrain` (tooling/cli/retrain.py) runs this body in-process, inside a
Ray job, or submits that job to a cluster.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serve_app.lifecycle.rollout import CandidateConfig, read_rollout, rewrite_serve_config
from serve_app.model.registry import LocalRegistry, RegistrySpec, S3Registry, check_version

# Set by Ray's job supervisor in every job driver's environment (ray.dashboard job_supervisor).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# A job's driver runs on the head node, where the dashboard (and Serve's REST API) listens.
IN_JOB_DASHBOARD = "http://127.0.0.1:8265"
DEFAULT_SHADOW_SHARE = 0.1


class RetrainError(RuntimeError):
    """The job cannot start or finish (bad config, registry, Serve config or deploy)."""


def in_ray_job() -> bool:
    return RAY_JOB_ENV in os.environ


@dataclass(frozen=True)
class RetrainOptions:
    """One retraining run. Paths are as the job's process sees them."""

    config: Path
    serve_config: Path = Path("serve_config.yaml")
    work_dir: Path = Path("runs/retrain")
    data_root: Path | None = None
    registry: RegistrySpec | None = None  # None: the one Settings names
    max_steps: int | None = None
    epochs: int | None = None
    limit: int | None = None
    threads: int | None = None
    shadow_share: float = DEFAULT_SHADOW_SHARE
    deploy_address: str | None = None  # a Ray dashboard: `serve deploy` the edited config there
    track: bool = True
    version: str | None = None  # default: the config's version + date + commit


@dataclass(frozen=True)
class SetFigures:
    """A validation set's INT8 figures, the candidate's beside the live model's card."""

    name: str
    macro_f1: float
    breakdown_tvd: float | None
    live_macro_f1: float | None = None
    live_breakdown_tvd: float | None = None


@dataclass(frozen=True)
class RetrainResult:
    version: str
    pushed_as: tuple[str, ...]  # registry names (one per task: the Classifier resolves by task)
    registry: str
    artifact: Path
    candidate: CandidateConfig
    model_versions: dict[str, str]  # the live versions, untouched
    figures: tuple[SetFigures, ...] = field(default_factory=tuple)
    deployed_to: str | None = None


def git_commit(where: Path) -> str | None:
    """The short commit of the checkout holding `where` (None outside one, e.g. in an image)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=where if where.is_dir() else where.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def candidate_version(
    base: str, taken: set[str], when: dt.date | None = None, commit: str | None = None
) -> str:
    """`<config version>-<YYYYMMDD>[-<commit>]`, with `-2`, `-3`... if already in the registry."""
    when = when or dt.datetime.now(dt.UTC).date()
    stem = f"{base}-{when:%Y%m%d}" + (f"-{commit}" if commit else "")
    version, n = stem, 1
    while version in taken:
        n += 1
        version = f"{stem}-{n}"
    check_version("candidate", version)
    return version


def validation_figures(card: Mapping[str, Any], live: Mapping[str, Any] | None) -> tuple[SetFigures, ...]:
    """Each validation set's served (INT8) macro-F1 and breakdown TVD, with the live card's."""

    def pick(c: Mapping[str, Any] | None, name: str) -> tuple[float | None, float | None]:
        row = ((c or {}).get("metrics") or {}).get(name, {}).get("int8")
        if not row:
            return None, None
        return float(row["macro_f1"]), (row.get("breakdown") or {}).get("tvd")

    out = []
    for name in card["metrics"]:
        if name.endswith("_validation"):
            f1, tvd = pick(card, name)
            live_f1, live_tvd = pick(live, name)
            assert f1 is not None
            out.append(SetFigures(name, f1, tvd, live_f1, live_tvd))
    return tuple(out)


def live_card(serve_config: Path, registry: LocalRegistry | S3Registry) -> dict[str, Any] | None:
    """The model card of what the Serve config serves: its registry version when one is named
    (a local registry; an S3 one is not downloaded for this), else `model_dir`. None when not
    found: a comparison to read, not a gate."""
    versions, _ = read_rollout(serve_config)
    cards: list[Path] = []
    if versions:
        task, version = next(iter(versions.items()))
        if isinstance(registry, LocalRegistry) and version in registry.versions(task):
            cards.append(registry.path(task, version) / "model_card.json")
    else:
        cfg = yaml.safe_load(serve_config.read_text()) or {}
        for app in cfg.get("applications") or []:
            model_dir = (app.get("args") or {}).get("model_dir")
            if model_dir:
                cards += [base / model_dir / "model_card.json" for base in (Path.cwd(), serve_config.parent)]
    for card in cards:
        if card.is_file():
            loaded: dict[str, Any] = json.loads(card.read_text())
            return loaded
    return None


def _check_serve_config_edit(serve_config: Path, version: str, shadow_share: float) -> None:
    """The candidate edit, tried on a scratch copy: a Serve config it cannot make fails the job
    before training, not after (ServeConfigEditError is a ValueError)."""
    scratch = serve_config.with_name(f".{serve_config.name}.retrain-check")
    try:
        shutil.copy2(serve_config, scratch)
        rewrite_serve_config(
            scratch, candidate=CandidateConfig(version=version, shadow_share=shadow_share, canary_share=0.0)
        )
    finally:
        scratch.unlink(missing_ok=True)


def deploy_target(deploy: bool, deploy_address: str | None, submit_address: str | None) -> str | None:
    """Where `serve deploy` goes: the address given, else the cluster the job is submitted to,
    else (inside a Ray job) the cluster it runs on; nowhere for a plain local run."""
    if not deploy:
        return None
    return deploy_address or submit_address or (IN_JOB_DASHBOARD if in_ray_job() else None)


def serve_deploy(serve_config: Path, address: str) -> None:
    """`serve deploy` the edited config to a running cluster (Serve reconfigures the Classifier
    in place: the candidate loads beside the live model, no restart)."""
    exe = Path(sys.executable).with_name("serve")
    cmd = [str(exe) if exe.is_file() else "serve", "deploy", str(serve_config), "--address", address]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RetrainError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _push(registry: LocalRegistry | S3Registry, tasks: list[str], version: str, artifact: Path) -> None:
    for task in tasks:
        if version in registry.versions(task):
            raise RetrainError(f"registry already has {task}/{version}; a candidate never overwrites one")
    for task in tasks:
        registry.push(task, version, artifact, latest=False)  # LATEST stays: no promotion


def run_retrain(opts: RetrainOptions, echo: Callable[[str], None] = print) -> RetrainResult:
    """The job body: train, export + evaluate (build_artifact), push a candidate, start its shadow."""
    from serve_app.config.settings import get_settings
    from serve_app.model.registry import RegistryError, registry_spec
    from training.config import ConfigError, load_config
    from training.data import default_data_root

    try:
        cfg = load_config(
            opts.config, {"epochs": opts.epochs, "max_steps": opts.max_steps, "threads": opts.threads}
        )
        # Checked before an hour of training: the file exists with a Classifier user_config.
        live_versions, previous = read_rollout(opts.serve_config)
        spec = opts.registry or registry_spec(get_settings())
        registry = spec.open()
        tasks = list(cfg.tasks)
        taken = {v for t in tasks for v in registry.versions(t)}
        version = opts.version or candidate_version(cfg.version, taken, commit=git_commit(opts.config))
        check_version("candidate", version)
        _check_serve_config_edit(opts.serve_config, version, opts.shadow_share)
    except (ConfigError, RegistryError, OSError, ValueError) as exc:
        raise RetrainError(str(exc)) from exc
    if opts.limit is not None:
        for src in cfg.train:
            src.limit = opts.limit
    if previous.active:
        echo(f"retrain: replacing the current candidate {previous.version} (it stays in the registry)")
    root = opts.data_root or default_data_root()
    run_dir = opts.work_dir / version
    artifact = run_dir / "artifact"
    card = _train_and_export(cfg, opts, root, run_dir, artifact, echo)
    _push(registry, tasks, version, artifact)
    echo(f"retrain: pushed {version} as a candidate for {', '.join(tasks)} to {spec.where()}")
    candidate = CandidateConfig(version=version, shadow_share=opts.shadow_share, canary_share=0.0)
    rewrite_serve_config(opts.serve_config, candidate=candidate)
    echo(f"retrain: {opts.serve_config}: candidate {candidate.model_dump()} (model_versions unchanged)")
    deployed = None
    if opts.deploy_address:
        try:
            serve_deploy(opts.serve_config, opts.deploy_address)
        except (RetrainError, OSError, subprocess.SubprocessError) as exc:
            raise RetrainError(
                f"candidate {version} is pushed and set in {opts.serve_config}, but its shadow did "
                f"not start: {exc}"
            ) from exc
        deployed = opts.deploy_address
        echo(f"retrain: serve deploy to {deployed}: the shadow of {version} is running")
    return RetrainResult(
        version=version,
        pushed_as=tuple(tasks),
        registry=spec.where(),
        artifact=artifact,
        candidate=candidate,
        model_versions=live_versions,
        figures=validation_figures(card, live_card(opts.serve_config, registry)),
        deployed_to=deployed,
    )


def _train_and_export(
    cfg: Any, opts: RetrainOptions, root: Path, run_dir: Path, artifact: Path, echo: Callable[[str], None]
) -> dict[str, Any]:
    from training.pipeline import build_artifact
    from training.tracking import maybe_tracked_run
    from training.train import train

    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(opts.config, run_dir / "config.yaml")  # the exact recipe beside its run
    threads = opts.threads or cfg.hparams.threads or 2
    with maybe_tracked_run(cfg, opts.config, root, opts.track) as tracker:
        result = train(cfg, run_dir, root, on_epoch=tracker.on_epoch if tracker else None)
        echo(f"retrain: best epoch {result.best_epoch}; checkpoint {result.checkpoint}")
        card: dict[str, Any] = build_artifact(
            cfg, result.checkpoint, artifact, run_dir, root, result, threads
        )
        if tracker:
            tracker.finish(card, artifact)
    return card


def figures_table(figures: tuple[SetFigures, ...]) -> list[str]:
    """Validation figures, candidate beside live (INT8; live from its card when known)."""

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [f"{'validation set':<30} {'macro-F1':>9} {'live':>7} {'TVD':>7} {'live':>7}"]
    for s in figures:
        lines.append(
            f"{s.name:<30} {f(s.macro_f1):>9} {f(s.live_macro_f1):>7} "
            f"{f(s.breakdown_tvd):>7} {f(s.live_breakdown_tvd):>7}"
        )
    return lines
