"""Classifier: the INT8 ONNX model behind `@serve.batch` dynamic batching.

Each call carries a list of texts (one for a single /predict, hundreds for /analyze);
concurrent calls are gathered into one batch, flattened, run through the predictor (which
sorts by length and pads per model batch), and split back per caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve_app.predictor import OnnxPredictor

log = logging.getLogger("emotion_monitor.classifier")


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


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    max_ongoing_requests=128,
    user_config={"max_batch_size": 32, "batch_wait_timeout_s": 0.005},
    logging_config={"enable_access_log": False},
    health_check_period_s=10,
)
class Classifier:
    def __init__(
        self,
        model_dir: str,
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
        self.predictor = OnnxPredictor(
            Path(model_dir), threads=n_threads, max_length=max_length, batch_size=model_batch_size
        )
        log.info(
            "loaded %s (%s) with %d ORT threads, max_length %d",
            model_dir,
            self.predictor.version,
            n_threads,
            self.predictor.max_length,
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        batcher: Any = self._classify  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(int(config.get("max_batch_size", 32)))
        batcher.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.005)))

    def info(self) -> dict[str, Any]:
        return {
            "version": self.predictor.version,
            "labels": list(self.predictor.labels),
            "max_length": self.predictor.max_length,
            "model_dir": str(self.predictor.model_dir),
        }

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _classify(self, requests: list[list[str]]) -> list[np.ndarray]:
        flat = [t for texts in requests for t in texts]
        probs = self.predictor.probabilities(flat)
        return split_back(probs, [len(t) for t in requests])

    async def classify(self, texts: list[str]) -> list[dict[str, Any]]:
        """Label, confidence and all scores for each text, in order."""
        if not texts:
            return []
        probs = await self._classify(texts)
        return probs_to_rows(probs, self.predictor.labels)

    def check_health(self) -> None:
        if self.predictor.session is None:  # pragma: no cover - defensive
            raise RuntimeError("ONNX session is gone")
