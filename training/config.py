"""Training configuration: a versioned YAML file parsed into typed dataclasses.

A config trains one encoder with one classification head per task. A single-task model is
the case of one entry under `tasks`; the shared emotion + sentiment model has two, and a
training source may carry labels for several tasks (files joined on their row `id`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLASS_WEIGHTINGS = {"none", "inverse", "sqrt_inverse"}
SELECTION_METRICS = {"macro_f1", "macro_recall", "accuracy"}


class ConfigError(ValueError):
    """The training config file is invalid."""


@dataclass
class SourceConfig:
    """One training source. `paths` maps a task to a labelled JSONL file (relative to the
    data root unless absolute); a source's files are joined on their `id` field, so one
    comment labelled for emotion and for sentiment trains both heads in one pass."""

    name: str
    paths: dict[str, str]
    repeat: float = 1.0  # sampling ratio per epoch (0.5 = a fresh random half each epoch)
    limit: int | None = None  # rows read per file (smoke runs)
    # Hugging Face hub ids per task, used only when the local file is absent and the hub is
    # reachable (users with internet; never in CI).
    hf_datasets: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskConfig:
    labels: list[str]
    validation: dict[str, str]  # set name -> file; names are unique across tasks
    test: dict[str, str] = field(default_factory=dict)
    # A data set whose labels are a subset of the model's (CARER has no `neutral`) is read
    # with the model's label list: a prediction outside its labels simply counts as wrong.
    class_weighting: str = "none"  # none | inverse | sqrt_inverse
    # The checkpoint kept is the one with the best mean of each validation set's metric over
    # every task: macro_f1, or macro_recall (TweetEval's sentiment metric).
    selection_metric: str = "macro_f1"
    loss_weight: float = 1.0
    # Validation sets whose breakdown error picks the counting method (default: all the
    # task's, the product's domain first): the method with the lowest worst-case TVD is served.
    breakdown_sets: list[str] = field(default_factory=list)


@dataclass
class HyperParams:
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_length: int = 128
    seed: int = 42
    label_smoothing: float = 0.0
    pooling: str = "mean"  # mean | cls
    dropout: float = 0.1
    max_steps: int | None = None  # stop early (smoke tests)
    # Also judge the mean weights of the last k epochs (k = 2..epochs) on validation; the
    # best of those and the single epochs is kept.
    average_checkpoints: bool = False
    eval_batch_size: int = 64
    threads: int | None = None


@dataclass
class ExportConfig:
    opset: int = 17
    # INT8 schemes tried; the one agreeing best with FP32 on validation is kept.
    # A scheme may add `fp32_ffn_output: true`: the feed-forward output projections stay FP32
    # (mixed precision: closer to FP32, ~30 % slower and +10 MB on MiniLM; not tried by default).
    quantization: list[dict[str, bool]] = field(
        default_factory=lambda: [
            {"per_channel": False, "preprocess": False},
            {"per_channel": True, "preprocess": False},
            {"per_channel": False, "preprocess": True},
            {"per_channel": True, "preprocess": True},
        ]
    )
    calibrate_temperature: bool = True


@dataclass
class TrainConfig:
    name: str
    version: str
    base_model: str
    tasks: dict[str, TaskConfig]
    train: list[SourceConfig]
    languages: list[str] = field(default_factory=lambda: ["en"])  # what the model can judge
    hparams: HyperParams = field(default_factory=HyperParams)
    export: ExportConfig = field(default_factory=ExportConfig)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def validation_sets(self) -> dict[str, tuple[str, str]]:
        """Validation set name -> (task, path), over every task."""
        return {n: (t, p) for t, tc in self.tasks.items() for n, p in tc.validation.items()}

    def test_sets(self) -> dict[str, tuple[str, str]]:
        return {n: (t, p) for t, tc in self.tasks.items() for n, p in tc.test.items()}


def _check(cfg: TrainConfig, path: Path) -> None:
    if not cfg.tasks:
        raise ConfigError(f"{path}: `tasks` must name at least one task")
    for task, tc in cfg.tasks.items():
        if tc.class_weighting not in CLASS_WEIGHTINGS:
            raise ConfigError(
                f"{path}: tasks.{task}.class_weighting must be one of {sorted(CLASS_WEIGHTINGS)}, "
                f"not {tc.class_weighting!r}"
            )
        if tc.selection_metric not in SELECTION_METRICS:
            raise ConfigError(
                f"{path}: tasks.{task}.selection_metric must be one of {sorted(SELECTION_METRICS)}, "
                f"not {tc.selection_metric!r}"
            )
        if not tc.validation:
            raise ConfigError(f"{path}: tasks.{task} needs a validation set to select a checkpoint")
    for what in ("validation", "test"):
        names = [n for tc in cfg.tasks.values() for n in getattr(tc, what)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{path}: {what} set names must be unique across tasks: {dup}")
    for src in cfg.train:
        unknown = sorted(set(src.paths) - set(cfg.tasks))
        if unknown or not src.paths:
            raise ConfigError(
                f"{path}: train source {src.name!r} names tasks {unknown or '(none)'}; "
                f"known tasks: {', '.join(cfg.tasks)}"
            )
    if cfg.hparams.pooling not in {"mean", "cls"}:
        raise ConfigError(f"{path}: pooling must be mean|cls, not {cfg.hparams.pooling}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = dict(raw)
    try:
        hp = HyperParams(**(raw.pop("hparams", None) or {}))
        for key, value in (overrides or {}).items():
            if value is not None:
                if not hasattr(hp, key):
                    raise ConfigError(f"unknown hyperparameter override {key!r}")
                setattr(hp, key, value)
        cfg = TrainConfig(
            tasks={str(t): TaskConfig(**spec) for t, spec in (raw.pop("tasks", None) or {}).items()},
            train=[SourceConfig(**s) for s in raw.pop("train")],
            hparams=hp,
            export=ExportConfig(**(raw.pop("export", None) or {})),
            **raw,
        )
    except (TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    _check(cfg, path)
    return cfg
