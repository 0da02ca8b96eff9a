"""Experiment tracking: every training run's config, data checksums, per-epoch validation
figures and exported artifact, logged to MLflow.

The store is `Settings.tracking.uri` (EMOTION_MONITOR_TRACKING__URI; a local
SQLite file under runs/ by default). The model card beside the artifact stays the
committed record; MLflow is for comparing runs (`mlflow ui --backend-store-uri ...`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.data import file_sha256


class TrackingError(RuntimeError):
    """MLflow is missing or its store cannot be opened."""


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts and lists as dotted keys (MLflow params and metrics are flat)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            flatten(f"{prefix}.{v.get('name', i)}", v, out)
    else:
        out[prefix] = value
    return out


def epoch_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one epoch's validation record (per-class F1 included)."""
    flat = flatten("", {k: v for k, v in record.items() if k not in {"epoch", "step"}}, {})
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def data_checksums(cfg: TrainConfig, data_root: Path) -> dict[str, str]:
    files = {f"train.{s.name}.{t}": p for s in cfg.train for t, p in s.paths.items()}
    files.update({f"validation.{n}": p for n, (_, p) in cfg.validation_sets().items()})
    out = {}
    for key, rel in files.items():
        path = Path(rel) if Path(rel).is_absolute() else data_root / rel
        out[f"data.{key}.sha256"] = file_sha256(path) if path.is_file() else "absent"
    return out


def _git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """One MLflow run; `None`-safe for callers that track nothing."""

    def __init__(self, mlflow: Any) -> None:
        self.mlflow = mlflow

    def on_epoch(self, record: Mapping[str, Any]) -> None:
        metrics = epoch_metrics(record)
        averaged = record.get("averaged_epochs")
        if averaged:  # a checkpoint-averaging candidate: its own series, at its last epoch
            metrics = {f"mean_last_{len(averaged)}.{k}": v for k, v in metrics.items()}
        self.mlflow.log_metrics(metrics, step=int(record["epoch"]))

    def finish(self, card: Mapping[str, Any], artifact_dir: Path) -> None:
        final: dict[str, float] = {}
        for dname, res in card.get("metrics", {}).items():
            for prec in ("fp32", "int8"):
                r = res[prec]
                for name in ("accuracy", "macro_f1", "macro_recall", "breakdown_tvd"):
                    final[f"final.{dname}.{prec}.{name}"] = float(r[name])
                if r["breakdown"]["tvd"] is not None:
                    final[f"final.{dname}.{prec}.tvd_served"] = float(r["breakdown"]["tvd"])
        self.mlflow.log_metrics(final)
        self.mlflow.log_artifacts(str(artifact_dir), "artifact")


@contextmanager
def tracked_run(
    cfg: TrainConfig, config_path: Path | None, data_root: Path, uri: str, experiment: str
) -> Iterator[Tracker]:
    """An MLflow run with the config and data checksums logged up front."""
    try:
        import mlflow
    except ImportError as exc:
        raise TrackingError("MLflow is not installed: `pip install -e '.[train]'`") from exc
    artifacts = None
    if uri.startswith("sqlite:///"):
        # A local store keeps its artifacts beside the database (MLflow's default would be
        # ./mlruns in the working directory, i.e. inside the checkout).
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        artifacts = (db.parent / "mlartifacts").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        exp_id = (
            exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifacts)
        )
    except Exception as exc:
        raise TrackingError(f"cannot open the MLflow store {uri!r}: {exc}") from exc
    with mlflow.start_run(experiment_id=exp_id, run_name=cfg.version):
        params = flatten("", {k: v for k, v in cfg.to_dict().items() if k != "notes"}, {})
        # MLflow caps a param value at 6,000 characters; every value here is far shorter.
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags(
            {
                "git_commit": _git_commit(),
                "config_file": str(config_path or ""),
                **data_checksums(cfg, data_root),
            }
        )
        if config_path is not None and config_path.is_file():
            mlflow.log_artifact(str(config_path), "config")
        yield Tracker(mlflow)


@contextmanager
def maybe_tracked_run(
    cfg: TrainConfig, config_path: Path | None, data_root: Path, enabled: bool
) -> Iterator[Tracker | None]:
    """A tracked run in the store that Settings names, or None when tracking is off."""
    if not enabled:
        yield None
        return
    from serve_app.config.settings import get_settings

    s = get_settings()
    with tracked_run(cfg, config_path, data_root, s.tracking.uri, s.tracking.experiment) as tracker:
        yield tracker
