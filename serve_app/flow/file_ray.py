"""Scoring a file's texts on a Ray cluster with Ray Data (`emotion-monitor analyze --file --ray ADDRESS`).

Only the model work moves: this process still reads the file, applies hygiene and the
language selection and counts (serve_app.flow.file_analysis), so the answer is the local one.
Each chunk of selected texts becomes a dataset (`ray.data.from_items`) that `map_batches`
sends through a fixed pool of actors, each holding one ONNX session (`OnnxBatchScorer`);
probabilities come back with each text's index, so the order of the batches does not matter.
Imported only when `--ray` is given: nothing else needs Ray Data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray

from serve_app.domain.records import ServedModels
from serve_app.flow.file_analysis import Scorer
from serve_app.model.predictor import OnnxPredictor


class OnnxBatchScorer:
    """A Ray Data actor: one ONNX session, loaded once, scoring batches of texts."""

    def __init__(
        self, model_dir: str, max_length: int, batch_size: int, threads: int, tasks: list[str]
    ) -> None:
        self.predictor = OnnxPredictor(
            model_dir, threads=threads, max_length=max_length, batch_size=batch_size
        )
        self.tasks = tasks

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.predictor.probabilities_all([str(t) for t in batch["text"]])
        return {"i": batch["i"], **{t: probs[t] for t in self.tasks}}


@dataclass
class RayScoring:
    """Makes the `Scorer` for a file analysis that runs its model on the cluster at `address`.

    `actors`: the actor pool's size (default: one per `cpus_per_actor` of the cluster's CPUs);
    `resources`: custom resources each actor needs (to keep them off the head, for example).
    """

    address: str
    actors: int | None = None
    cpus_per_actor: float = 1.0
    threads: int = 1  # ONNX Runtime threads per actor; one actor per CPU scales with nodes
    batch_size: int = 32  # texts per model batch, as in the local path
    rows_per_batch: int = 256  # texts per Ray Data batch (an actor call)
    chunk_size: int = 8192  # texts per dataset: the file is read and scored this many at a time
    resources: dict[str, float] = field(default_factory=dict)

    def connect(self) -> None:
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI draws its own progress bar on stderr

    def pool_size(self) -> int:
        if self.actors:
            return self.actors
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.cpus_per_actor))

    def __call__(self, models: ServedModels) -> Scorer:
        self.connect()
        tasks = list(models.tasks)
        first = models.tasks[tasks[0]]
        kwargs = {
            # Workers start elsewhere: the artifact's absolute path (shared storage on a real cluster).
            "model_dir": str(Path(first.model_dir).resolve()),
            "max_length": first.max_length,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "tasks": tasks,
        }
        pool = self.pool_size()
        labels = {t: len(models.tasks[t].labels) for t in tasks}

        def score(texts: Sequence[str]) -> Mapping[str, np.ndarray]:
            out = {t: np.empty((len(texts), k), dtype=np.float32) for t, k in labels.items()}
            ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
            scored = ds.map_batches(
                OnnxBatchScorer,
                fn_constructor_kwargs=kwargs,
                batch_size=self.rows_per_batch,
                batch_format="numpy",
                concurrency=pool,
                num_cpus=self.cpus_per_actor,
                resources=self.resources or None,
            )
            for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
                for t in tasks:
                    out[t][batch["i"]] = batch[t]
            return out

        return score
