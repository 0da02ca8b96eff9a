"""Evaluate model artifacts on labelled JSONL files (torch-free)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.counting.breakdown import METHODS, breakdown_tvd, estimate_shares, label_shares, tvd
from serve_app.counting.quantify import Counting, estimate
from serve_app.model.predictor import OnnxPredictor
from training.data import read_jsonl
from training.metrics import (
    agreement,
    bootstrap_intervals,
    classification_report,
    expected_calibration_error,
    neutral_given_other,
)


def breakdown_report(
    probs: np.ndarray,
    y_true: Sequence[int],
    labels: Sequence[str],
    served: str,
    adjustment: Any = None,
    counting: Counting | None = None,
) -> dict[str, Any]:
    """True label shares beside each counting method's estimate, with its TVD; the served
    method as the artifact fits it (`counting`, serve_app.counting.quantify) when given."""
    true = label_shares(y_true, len(labels))
    methods: dict[str, Any] = {}
    for method in METHODS:
        if method == "pacc" and adjustment is None:
            continue
        est = estimate_shares(probs, method, adjustment)
        methods[method] = {
            "shares": dict(zip(labels, np.round(est, 4).tolist(), strict=True)),
            "tvd": tvd(est, true),
        }
    if counting is not None and counting.method == served:
        est = estimate(probs, counting)
        methods[served] = {
            "shares": dict(zip(labels, np.round(est, 4).tolist(), strict=True)),
            "tvd": tvd(est, true),
        }
    return {
        "true": dict(zip(labels, np.round(true, 4).tolist(), strict=True)),
        "methods": methods,
        "served_method": served,
        "tvd": methods[served]["tvd"] if served in methods else None,
    }


def evaluate_predictor(
    predictor: OnnxPredictor, data: Path, limit: int | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Report for one data file on the predictor's task head, and the probabilities.

    The file's labels may be a subset of the model's (CARER has no `neutral`): a
    prediction of a label the file never uses simply counts as wrong.
    """
    labels = list(predictor.labels)
    examples = read_jsonl(data, labels, limit=limit)
    probs = predictor.probabilities([e.text for e in examples])
    y = [e.label for e in examples]
    pred = probs.argmax(1).tolist()
    report = classification_report(y, pred, labels)
    report["ece"] = expected_calibration_error(probs, y)
    report["data"] = str(data)
    report["task"] = predictor.task
    report["breakdown_tvd"] = breakdown_tvd(y, pred, len(labels))
    report["intervals"] = bootstrap_intervals(y, pred, len(labels))
    report["breakdown"] = breakdown_report(
        probs, y, labels, predictor.head.breakdown_method, predictor.head.adjustment, predictor.head.counting
    )
    if "neutral" in labels:
        report["neutral_given_other"] = neutral_given_other(y, pred, labels.index("neutral"))
    return report, probs


def compare_models(
    models: dict[str, OnnxPredictor], datasets: dict[str, tuple[str, Path]]
) -> dict[str, dict[str, Any]]:
    """Every model on every dataset (name -> (task, file)), on that task's head, plus label
    agreement between the first model and the others."""
    results: dict[str, dict[str, Any]] = {}
    for dname, (task, path) in datasets.items():
        per_model: dict[str, Any] = {"task": task}
        preds: dict[str, np.ndarray] = {}
        for mname, predictor in models.items():
            report, probs = evaluate_predictor(predictor.for_task(task), path)
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
