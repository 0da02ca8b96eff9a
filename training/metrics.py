"""Classification metrics with numpy only (no sklearn in the serving image)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def _per_class(
    cm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, support, predicted, precision, recall, F1) per class of a confusion
    matrix (rows: true labels), or of a stack of them (..., n, n)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    precision, recall = _div(tp, predicted), _div(tp, support)
    return tp, support, predicted, precision, recall, _div(2 * precision * recall, precision + recall)


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, macro recall, per-class P/R/F1/support, confusion."""
    n = len(labels)
    cm = confusion_matrix(y_true, y_pred, n)
    tp, support, _, precision, recall, f1 = _per_class(cm)
    total = float(cm.sum())
    present = support > 0
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, lab in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


def _figures_from_confusions(cms: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, macro-F1, macro-recall and breakdown TVD (argmax counting) of a stack of
    confusion matrices (draws, n, n); macro figures over each matrix's classes with support,
    as `classification_report` takes them."""
    tp, support, predicted, _, recall, f1 = _per_class(cms)
    total = cms.sum(axis=(1, 2))
    present = support > 0
    n_present = present.sum(axis=1)
    return {
        "accuracy": tp.sum(axis=1) / total,
        "macro_f1": (f1 * present).sum(axis=1) / n_present,
        "macro_recall": (recall * present).sum(axis=1) / n_present,
        "breakdown_tvd": 0.5 * np.abs(predicted - support).sum(axis=1) / total,
    }


def bootstrap_intervals(
    y_true: Sequence[int], y_pred: Sequence[int], n: int, draws: int = 2000, seed: int = 0
) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals over texts for accuracy, macro-F1, macro-recall
    and the argmax breakdown TVD: how far the figure could move on another sample of the
    same size from the same source (a test split is a sample too).

    Every figure is a function of the confusion matrix, and a resample of the texts has a
    multinomial confusion matrix with the observed cells' shares, so the draws are taken on
    the n x n cells, not on the texts (milliseconds for any set size)."""
    cm = confusion_matrix(y_true, y_pred, n)
    total = int(cm.sum())
    if total == 0:
        return {}
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(total, cm.ravel() / total, size=draws).reshape(draws, n, n)
    figures = _figures_from_confusions(cells)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in figures.items()}


def agreement(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """Share of items where two models predict the same label."""
    x, y = np.asarray(a), np.asarray(b)
    return float((x == y).mean()) if len(x) else 1.0


def expected_calibration_error(probs: np.ndarray, y_true: Sequence[int], bins: int = 15) -> float:
    """ECE over equal-width confidence bins: how far confidence is from accuracy."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return float(ece)


def fit_temperature(
    logits: np.ndarray, y_true: Sequence[int], weights: Sequence[float] | np.ndarray | None = None
) -> float:
    """Temperature minimising (weighted) validation NLL, by golden-section search on log T."""
    y = np.asarray(y_true)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(w * logp[np.arange(len(y)), y]).sum())

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(80):
        if nll(c) < nll(d):
            hi = d
        else:
            lo = c
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    return float(np.exp((lo + hi) / 2))


def neutral_given_other(y_true: Sequence[int], y_pred: Sequence[int], neutral: int) -> float | None:
    """Share of truly neutral texts given another label (None where there are none)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    sel = t == neutral
    return float((p[sel] != neutral).mean()) if sel.any() else None
