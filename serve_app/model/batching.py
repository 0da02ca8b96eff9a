"""Dynamic batching's pure half: many callers' texts flattened into one model run per ONNX
session, split back per caller, as probability rows; the Classifier's user_config parsed.

The Classifier deployment (deployments/classifier.py) and the ingress's inline /predict
(deployments/inline.py) both run batches through `run_batch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serve_app.config.defaults import BATCH_WAIT_S, MAX_BATCH_SIZE
from serve_app.domain.records import PredictionRow
from serve_app.model.predictor import OnnxPredictor
from serve_app.model.registry import RegistrySpec
from serve_app.monitoring import metrics
from serve_app.stores.drift_store import DriftTap


def split_back(flat: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Cut a stacked result back into one array per caller."""
    out, start = [], 0
    for n in sizes:
        out.append(flat[start : start + n])
        start += n
    return out


def replica_threads(num_cpus: float | None, requested: int | None) -> int:
    """ONNX Runtime threads: what was asked for, else the replica's CPU share (>= 1)."""
    if requested:
        return max(1, requested)
    return max(1, int(num_cpus or 1))


def probs_to_rows(probs: np.ndarray, labels: Sequence[str]) -> list[PredictionRow]:
    rows: list[PredictionRow] = []
    for p in probs:
        best = int(p.argmax())
        rows.append(
            {
                "label": labels[best],
                "confidence": float(p[best]),
                "scores": {lab: float(v) for lab, v in zip(labels, p, strict=True)},
            }
        )
    return rows


class UnknownTaskError(ValueError):
    """A call named a task (model) this Classifier does not serve."""

    def __init__(self, task: str, served: Sequence[str]) -> None:
        self.message = f"task {task!r} is not served here; served: {', '.join(served)}"
        super().__init__(self.message)
        self.task, self.served = task, tuple(served)

    def __reduce__(self) -> tuple[object, ...]:  # survive pickling across Ray actors
        return (type(self), (self.task, self.served))


# One batched call: the tasks it wants, its texts and, optionally, the source its posts came
# from (the drift watch keeps a window per source; calls without one are not recorded).
ClassifyCall = tuple[tuple[str, ...], Sequence[str]] | tuple[tuple[str, ...], Sequence[str], str]


# Its answer: per task, the predictor (version) that produced it and the probabilities.
TaskAnswers = dict[str, tuple[OnnxPredictor, np.ndarray]]


def call_source(call: ClassifyCall) -> str:
    return str(call[2]) if len(call) == 3 else ""


def group_by_model(
    predictors: Mapping[str, OnnxPredictor], requests: Sequence[ClassifyCall]
) -> dict[int, list[int]]:
    """Indices of the batched calls per ONNX session, so each graph runs once per batch
    (tasks that share an artifact share its session and its encoder pass)."""
    groups: dict[int, list[int]] = {}
    for i, (tasks, *_) in enumerate(requests):
        for sid in dict.fromkeys(id(predictors[t].session) for t in tasks):
            groups.setdefault(sid, []).append(i)
    return groups


class ModelVersionError(ValueError):
    """`model_versions` in the Classifier's user_config cannot be honoured."""


def check_model_versions(
    wanted: Mapping[str, str], served: Sequence[str], registry: RegistrySpec | None
) -> None:
    """Refuse a user_config that names a task not served, or versions without a registry."""
    unknown = sorted(set(wanted) - set(served))
    if unknown:
        raise ModelVersionError(
            f"model_versions names {', '.join(unknown)}, not served here (served: {', '.join(served)})"
        )
    if wanted and registry is None:
        raise ModelVersionError("model_versions is set but the Classifier was given no registry")


def run_batch(
    predictors: Mapping[str, OnnxPredictor], requests: Sequence[ClassifyCall], tap: DriftTap | None = None
) -> list[TaskAnswers]:
    """One batch of calls: each model runs once over its calls' texts, flattened, and
    answers every head its calls asked for.

    `predictors` is read once, so a version swapped in meanwhile never mixes into a batch,
    and each answer comes with the predictor (version) that produced it. With a drift `tap`,
    calls that name a source are recorded (probabilities and pooled embeddings) for the
    drift watch: a queue append, written to Redis off this path.
    """
    answers: list[TaskAnswers] = [{} for _ in requests]
    by_session = {id(p.session): p for p in predictors.values()}
    for sid, idx in group_by_model(predictors, requests).items():
        texts = [t for i in idx for t in requests[i][1]]
        sizes = [len(requests[i][1]) for i in idx]
        if tap is None:
            probs = by_session[sid].probabilities_all(texts)
        else:
            probs, emb = by_session[sid].probabilities_and_embeddings(texts)
            heads = {t: probs[t] for t, p in predictors.items() if id(p.session) == sid}
            tap.offer_batch([(call_source(requests[i]), requests[i][0]) for i in idx], sizes, heads, emb)
        for task, pred in predictors.items():
            if id(pred.session) != sid or not any(task in requests[i][0] for i in idx):
                continue
            metrics.record_probabilities(task, pred.labels, probs[task])
            for i, part in zip(idx, split_back(probs[task], sizes), strict=True):
                if task in requests[i][0]:
                    answers[i][task] = (pred, part)
    return answers


def parse_user_config(config: Mapping[str, Any]) -> tuple[int, float, dict[str, str]]:
    """(max_batch_size, batch_wait_timeout_s, model_versions) from the Classifier's user_config."""
    known = {"max_batch_size", "batch_wait_timeout_s", "model_versions", "candidate"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ModelVersionError(f"unknown Classifier user_config keys {unknown}; known: {sorted(known)}")
    versions = config.get("model_versions") or {}
    if not isinstance(versions, Mapping):
        raise ModelVersionError("model_versions must map a task to a registry version, e.g. {emotion: v2}")
    return (
        int(config.get("max_batch_size", MAX_BATCH_SIZE)),
        float(config.get("batch_wait_timeout_s", BATCH_WAIT_S)),
        {str(k): str(v) for k, v in versions.items() if v},
    )
