"""Training configuration: a versioned YAML file parsed into typed dataclasses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The training config file is invalid."""


@dataclass
class SourceConfig:
    path: str  # relative to the data root unless absolute
    name: str
    repeat: float = 1.0  # sampling ratio per epoch (2.0 = every example twice)
    limit: int | None = None


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
    class_weighting: str = "none"  # none | inverse | sqrt_inverse
    pooling: str = "mean"  # mean | cls
    dropout: float = 0.1
    max_steps: int | None = None  # stop early (smoke tests)
    eval_batch_size: int = 64
    threads: int | None = None
    # The checkpoint kept is the one with the best mean of this metric over the validation
    # sets: macro_f1, or macro_recall (TweetEval's sentiment metric).
    selection_metric: str = "macro_f1"


@dataclass
class ExportConfig:
    opset: int = 17
    # INT8 schemes tried; the one agreeing best with FP32 on validation is kept.
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
    task: str
    version: str
    labels: list[str]
    base_model: str
    train: list[SourceConfig]
    validation: dict[str, str]
    test: dict[str, str] = field(default_factory=dict)
    hf_dataset: str | None = None
    languages: list[str] = field(default_factory=lambda: ["en"])  # what the model can judge
    hparams: HyperParams = field(default_factory=HyperParams)
    export: ExportConfig = field(default_factory=ExportConfig)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
            train=[SourceConfig(**s) for s in raw.pop("train")],
            hparams=hp,
            export=ExportConfig(**(raw.pop("export", None) or {})),
            **raw,
        )
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if hp.class_weighting not in {"none", "inverse", "sqrt_inverse"}:
        raise ConfigError(f"class_weighting must be none|inverse|sqrt_inverse, not {hp.class_weighting}")
    if hp.selection_metric not in {"macro_f1", "macro_recall", "accuracy"}:
        raise ConfigError(
            f"selection_metric must be macro_f1|macro_recall|accuracy, not {hp.selection_metric}"
        )
    if hp.pooling not in {"mean", "cls"}:
        raise ConfigError(f"pooling must be mean|cls, not {hp.pooling}")
    if not cfg.validation:
        raise ConfigError(f"{path}: at least one validation set is needed to select a checkpoint")
    return cfg
