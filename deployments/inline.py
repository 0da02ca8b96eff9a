"""The Classifier's models, loaded a second time inside the ingress, for short /predict calls.

On one small machine the hop from the ingress to a Classifier replica (a Ray call, another
process, another event loop) costs more than classifying one short text. With
`predict_in_ingress` the ingress answers /predict calls of a few texts itself, batched with
`@serve.batch`, using the very artifact the Classifier serves: it follows the Classifier's
`info()` (version and directory per task) and, until it holds that model, sends the call
to the Classifier as before. Where the Classifier's directory is not on this node (a
multi-node cluster), it never loads anything and every call goes to the Classifier.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ray import serve

from serve_app.config.defaults import MAX_BATCH_SIZE
from serve_app.domain.records import PredictionRow, TaskModel
from serve_app.model.batching import ClassifyCall, TaskAnswers, probs_to_rows, run_batch
from serve_app.model.predictor import OnnxPredictor, artifact_digest

log = logging.getLogger("ray.serve.emotion_monitor.inline")

# Beyond this many texts a call goes to the Classifier: the ingress runs one batch at a
# time, and a long call would make every short call batched with it wait for it.
INLINE_MAX_TEXTS = 8


def matches(pred: OnnxPredictor | None, spec: TaskModel) -> bool:
    """Is `pred` the model the Classifier describes in `spec` (one task of its info())?"""
    return (
        pred is not None
        and pred.version == spec.version
        and str(pred.model_dir) == spec.model_dir
        and pred.max_length == spec.max_length
    )


class InlineModels:
    """Per task, the predictor the Classifier serves, once it is loaded here.

    `lookup` never blocks: a model not yet here (or just rolled to a new version) starts
    loading in a thread and the caller uses the Classifier meanwhile. An artifact that
    fails to load is not tried again.
    """

    def __init__(
        self,
        threads: int,
        batch_size: int = MAX_BATCH_SIZE,
        batch_wait_s: float = 0.0,
        model_batch_size: int = 32,
    ) -> None:
        """`batch_size`, `batch_wait_s`: the dynamic batch of calls; `model_batch_size`: texts
        per ONNX Runtime run within it."""
        self.threads, self.model_batch_size = threads, model_batch_size
        self.predictors: dict[str, OnnxPredictor] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._failed: set[tuple[str, str]] = set()
        batcher: Any = self._batch  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(batch_size)
        batcher.set_batch_wait_timeout_s(batch_wait_s)

    def lookup(self, task: str, spec: TaskModel) -> OnnxPredictor | None:
        pred = self.predictors.get(task)
        if matches(pred, spec):
            return pred
        key = (spec.model_dir, spec.version)
        if key not in self._failed and task not in self._loading:
            self._loading[task] = asyncio.get_running_loop().create_task(self._load(task, spec))
        return None

    async def classify(
        self, task: str, spec: TaskModel, texts: list[str]
    ) -> tuple[str, list[PredictionRow]] | None:
        """(version, rows) from the copy here, or None: ask the Classifier (a long call, or
        the model is not loaded here yet)."""
        if not texts or len(texts) > INLINE_MAX_TEXTS or self.lookup(task, spec) is None:
            return None
        pred, probs = (await self._batch(((task,), texts)))[task]
        return pred.version, probs_to_rows(probs, pred.labels)

    # Two batches at once, each on one ONNX Runtime thread (`threads`): while one batch's
    # Python (tokenizing, rows, responses) holds the GIL the other keeps a core busy.
    # Measured at 32 users on 2 cores with two ingress replicas: 606-632 RPS against 517-547
    # with one batch at a time (docs/benchmarks.md).
    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
    async def _batch(self, requests: list[ClassifyCall]) -> list[TaskAnswers]:
        # In a thread (ONNX Runtime releases the GIL): the loop keeps parsing requests, so
        # the next batch fills while this one runs, and cache hits and /healthz never wait.
        return await asyncio.to_thread(run_batch, self.predictors, requests)

    async def _load(self, task: str, spec: TaskModel) -> None:
        key = (spec.model_dir, spec.version)
        try:
            model_dir = Path(spec.model_dir)
            if not (model_dir / "model.onnx").is_file():
                raise FileNotFoundError(f"{model_dir}/model.onnx is not on this node")
            pred = await asyncio.to_thread(self._open, task, spec, model_dir)
            # One assignment: a batch already running keeps the predictor it looked up.
            self.predictors = {**self.predictors, task: pred}
            log.info("ingress serves short %s calls itself with %s", task, pred.version)
        except Exception as exc:
            self._failed.add(key)
            log.warning("%s model %s not loaded in the ingress (%r): the Classifier answers", task, key, exc)
        finally:
            self._loading.pop(task, None)

    def _open(self, task: str, spec: TaskModel, model_dir: Path) -> OnnxPredictor:
        """A session already here for the same bytes (both heads of one artifact) is reused."""
        digest = artifact_digest(model_dir)
        for here in self.predictors.values():
            if here.digest == digest and here.max_length == spec.max_length:
                return here.copy_at(model_dir, digest, task, spec.version)
        return OnnxPredictor(
            model_dir, self.threads, spec.max_length, self.model_batch_size, version=spec.version, task=task
        )

    async def wait_loading(self) -> None:
        """Until every load in progress ended (tests)."""
        while self._loading:
            await asyncio.gather(*self._loading.values(), return_exceptions=True)
