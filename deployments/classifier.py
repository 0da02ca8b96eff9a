"""Classifier: the INT8 ONNX model behind `@serve.batch` dynamic batching.

Each call carries a list of texts (one for a single /predict, hundreds for /analyze);
concurrent calls are gathered into one batch, flattened, run through the predictor (which
sorts by length and pads per model batch), and split back per caller.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve_app import metrics
from serve_app.predictor import OnnxPredictor

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.classifier")


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


def probs_to_rows(probs: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
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


def group_by_task(requests: Sequence[tuple[str, Sequence[str]]]) -> dict[str, list[int]]:
    """Indices of the batched calls per task, so each model runs once per batch."""
    groups: dict[str, list[int]] = {}
    for i, (task, _) in enumerate(requests):
        groups.setdefault(task, []).append(i)
    return groups


def model_languages(model_dir: Path) -> list[str]:
    """Languages an artifact was trained on (labels.json `languages`; English if unsaid)."""
    meta = json.loads((model_dir / "labels.json").read_text())
    return [str(x) for x in meta.get("languages", ["en"])]


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    max_ongoing_requests=128,
    user_config={"max_batch_size": 32, "batch_wait_timeout_s": 0.005},
    logging_config={"enable_access_log": False},
    health_check_period_s=10,
)
class Classifier:
    """Every model (task) in one replica: a second INT8 model costs ~25 MB, a second
    deployment a whole replica process (~450 MB); both share the replica's batching."""

    def __init__(
        self,
        models: str | dict[str, str],
        threads: int | None = None,
        max_length: int | None = None,
        model_batch_size: int = 32,
    ) -> None:
        num_cpus = None
        try:
            ctx = serve.get_replica_context()
            num_cpus = getattr(ctx, "num_cpus", None)
        except Exception:  # pragma: no cover - outside a replica
            pass
        n_threads = replica_threads(
            num_cpus, threads or int(os.environ.get("EMOTION_MONITOR_ORT_THREADS", 0))
        )
        dirs = {"emotion": models} if isinstance(models, str) else dict(models)
        if not dirs:
            raise ValueError("the Classifier needs at least one model")
        self.predictors = {
            task: OnnxPredictor(Path(d), n_threads, max_length, model_batch_size) for task, d in dirs.items()
        }
        self.languages = {task: model_languages(Path(d)) for task, d in dirs.items()}
        self.default_task = "emotion" if "emotion" in dirs else next(iter(dirs))
        for task, pred in self.predictors.items():
            log.info(
                "loaded %s model %s from %s with %d ORT threads, max_length %d",
                task,
                pred.version,
                pred.model_dir,
                n_threads,
                pred.max_length,
            )

    @property
    def predictor(self) -> OnnxPredictor:
        return self.predictors[self.default_task]

    def reconfigure(self, config: dict[str, Any]) -> None:
        batcher: Any = self._classify  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(int(config.get("max_batch_size", 32)))
        batcher.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.005)))

    def info(self) -> dict[str, Any]:
        """The default task's model at the top level (as before), every task under `tasks`."""
        tasks = {
            task: {
                "version": p.version,
                "labels": list(p.labels),
                "languages": self.languages[task],
                "max_length": p.max_length,
                "model_dir": str(p.model_dir),
            }
            for task, p in self.predictors.items()
        }
        return {**tasks[self.default_task], "default_task": self.default_task, "tasks": tasks}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _classify(self, requests: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(requests)
        for task, idx in group_by_task(requests).items():
            flat = [t for i in idx for t in requests[i][1]]
            probs = self.predictors[task].probabilities(flat)
            for i, part in zip(idx, split_back(probs, [len(requests[i][1]) for i in idx]), strict=True):
                out[i] = part
        return out

    async def classify(self, texts: list[str], task: str | None = None) -> list[dict[str, Any]]:
        """Label, confidence and all scores for each text, in order, from the task's model."""
        task = task or self.default_task
        if task not in self.predictors:
            raise UnknownTaskError(task, list(self.predictors))
        if not texts:
            return []
        probs = await self._classify((task, texts))
        rows = probs_to_rows(probs, self.predictors[task].labels)
        metrics.record_predictions(task, rows)
        log.debug("classified %d texts (%s)", len(texts), task)
        return rows

    def check_health(self) -> None:
        for pred in self.predictors.values():
            if pred.session is None:  # pragma: no cover - defensive
                raise RuntimeError("ONNX session is gone")
