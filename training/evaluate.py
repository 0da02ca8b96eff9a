"""Evaluate model artifacts on labelled JSONL files (torch-free)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.predictor import OnnxPredictor
from training.data import read_jsonl
from training.metrics import agreement, classification_report, expected_calibration_error


def evaluate_predictor(
    predictor: OnnxPredictor, data: Path, limit: int | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Report for one data file, and the probabilities (for agreement between models)."""
    examples = read_jsonl(data, predictor.labels, limit=limit)
    probs = predictor.probabilities([e.text for e in examples])
    y = [e.label for e in examples]
    report = classification_report(y, probs.argmax(1).tolist(), predictor.labels)
    report["ece"] = expected_calibration_error(probs, y)
    report["data"] = str(data)
    return report, probs


def compare_models(models: dict[str, OnnxPredictor], datasets: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Every model on every dataset, plus label agreement between the first and the others."""
    results: dict[str, dict[str, Any]] = {}
    for dname, path in datasets.items():
        per_model: dict[str, Any] = {}
        preds: dict[str, np.ndarray] = {}
        for mname, predictor in models.items():
            report, probs = evaluate_predictor(predictor, path)
            per_model[mname] = report
            preds[mname] = probs.argmax(1)
        names = list(models)
        for other in names[1:]:
            per_model[f"agreement_{names[0]}_{other}"] = agreement(preds[names[0]], preds[other])
        results[dname] = per_model
    return results


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(cm, dtype=np.float64)
    norm = arr / np.maximum(arr.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(arr[i, j])}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
