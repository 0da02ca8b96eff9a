"""The model card's description of the model, its data and its training (training/pipeline.py
adds the metrics, export, calibration and counting sections)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.train import TrainResult


def model_card(
    cfg: TrainConfig,
    data_root: Path,
    train_result: TrainResult | None,
    results: dict[str, Any],
    figures: dict[str, str],
) -> dict[str, Any]:
    """The card's description of the model, its data and its training."""
    from training.data import file_sha256
    from training.export import library_versions
    from training.train import data_path

    def sha(rel: str) -> str | None:
        p = data_path(rel, data_root)
        return file_sha256(p) if p.is_file() else None

    return {
        "name": cfg.name,
        "version": cfg.version,
        "tasks": {t: {"labels": tc.labels} for t, tc in cfg.tasks.items()},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": cfg.base_model,
        "preprocessing": "serve_app.model.preprocess.normalize_text",
        "data": {
            "train": [
                {
                    "name": s.name,
                    "paths": s.paths,
                    "repeat": s.repeat,
                    "sha256": {t: sha(p) for t, p in s.paths.items()},
                    "label_counts": train_result.train_counts.get(s.name) if train_result else None,
                }
                for s in cfg.train
            ],
            "validation": {
                n: {"task": t, "path": p, "sha256": sha(p)} for n, (t, p) in cfg.validation_sets().items()
            },
        },
        "hyperparameters": cfg.to_dict()["hparams"],
        "task_settings": {
            t: {k: v for k, v in asdict(tc).items() if k not in {"labels", "validation", "test"}}
            for t, tc in cfg.tasks.items()
        },
        "training": {
            "best_epoch": train_result.best_epoch if train_result else None,
            "averaged_epochs": train_result.averaged_epochs if train_result else [],
            "seconds": round(train_result.seconds, 1) if train_result else None,
            "history": train_result.history if train_result else None,
        },
        "metrics": results,
        "figures": figures,
        "libraries": library_versions(),
        "notes": cfg.notes,
    }
