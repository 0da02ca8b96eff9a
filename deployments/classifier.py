"""Classifier: the INT8 ONNX model behind `@serve.batch` dynamic batching.

Each call carries a list of texts (one for a single /predict, hundreds for /analyze);
concurrent calls are gathered into one batch, flattened, run through the predictor (which
sorts by length and pads per model batch), and split back per caller: the pure half is
`serve_app.model.batching.run_batch`; this shell holds the models, versions and shadow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve_app.config.defaults import BATCH_WAIT_S, MAX_BATCH_SIZE
from serve_app.domain.records import ClassifyResult, PredictionRow, ServedModels, TaskModel
from serve_app.domain.tasks import DEFAULT_TASK
from serve_app.lifecycle.rollout import CandidateConfig
from serve_app.lifecycle.shadow import (
    ShadowCounts,
    ShadowTag,
    ShadowWorker,
    load_candidate,
    offer_sampled,
    shadow_sink,
)
from serve_app.model.batching import (
    ClassifyCall,
    ModelVersionError,
    TaskAnswers,
    UnknownTaskError,
    check_model_versions,
    parse_user_config,
    probs_to_rows,
    replica_threads,
    run_batch,
)
from serve_app.model.predictor import OnnxPredictor, artifact_digest
from serve_app.model.registry import RegistrySpec, resolve_version
from serve_app.stores.drift_store import DriftTap, TapConfig

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.classifier")


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    max_ongoing_requests=128,
    user_config={"max_batch_size": MAX_BATCH_SIZE, "batch_wait_timeout_s": BATCH_WAIT_S},
    logging_config={"enable_access_log": False},
    health_check_period_s=10,
)
class Classifier:
    """Every model (task) in one replica: a second INT8 model costs ~35 MiB of RSS, a second
    deployment a whole replica process (~450 MB; docs/benchmarks.md); both share the
    replica's batching.

    Which artifact a task serves: its directory from the app args, or, when the user_config
    names `model_versions: {task: version}`, that version from the model registry (local
    or S3). Changing `model_versions` with `serve deploy` swaps models in place: the new
    one loads beside the old, in-flight batches finish on the old one, and every answer
    carries the version that produced it.
    """

    def __init__(
        self,
        models: dict[str, str],
        threads: int | None = None,
        max_length: int | None = None,
        model_batch_size: int = MAX_BATCH_SIZE,
        registry: RegistrySpec | None = None,
        cache_dir: str | None = None,
        postgres_url: str | None = None,
        drift: TapConfig | None = None,
    ) -> None:
        num_cpus = None
        try:
            ctx = serve.get_replica_context()
            num_cpus = getattr(ctx, "num_cpus", None)
        except Exception:  # pragma: no cover - outside a replica
            pass
        self.n_threads = replica_threads(num_cpus, threads)
        self.dirs = dict(models)
        if not self.dirs:
            raise ValueError("the Classifier needs at least one model")
        self.max_length, self.model_batch_size = max_length, model_batch_size
        self.registry, self.cache_dir = registry, Path(cache_dir or ".emotion-monitor/models")
        self.predictors: dict[str, OnnxPredictor] = {}
        self.languages: dict[str, list[str]] = {}
        self.default_task = DEFAULT_TASK if DEFAULT_TASK in self.dirs else next(iter(self.dirs))
        # The candidate (serve_app/lifecycle/rollout.py): `shadow_models` score sampled posts on the
        # shadow thread (one ORT thread each, so all their work runs on that niced thread),
        # `canary_models` answer canary keywords through their own batch.
        self.candidate = CandidateConfig()
        self.shadow_models: dict[str, OnnxPredictor] = {}
        self.canary_models: dict[str, OnnxPredictor] = {}
        self._live_calls = 0  # live calls in flight: the shadow thread waits for none
        self.shadow = ShadowWorker(
            lambda: self.shadow_models, shadow_sink(postgres_url), idle=lambda: self._live_calls == 0
        )
        self._live_ms = 0.0
        self.drift_tap = DriftTap(drift) if drift is not None else None  # the drift watch's windows
        # Models load in reconfigure(), which Serve calls before the replica takes traffic,
        # so a replica told to serve a registry version never loads the args' model first.

    def _ensure_loaded(self) -> None:
        if not self.predictors:  # constructed without a user_config (outside Serve's usual path)
            self.apply_versions({})

    def apply_versions(self, wanted: Mapping[str, str]) -> list[str]:
        """Load what `wanted` names (task -> registry version; unnamed tasks: the args' dirs)
        and swap it in. Returns the tasks whose model changed."""
        check_model_versions(wanted, list(self.dirs), self.registry)
        changed = []
        # Sessions by content, the ones already serving included: tasks answered by the same
        # bytes (a multi-task artifact pushed under each task's name, or one task from the
        # registry and the other from the args' copy) share one session and one encoder pass.
        loaded = {p.digest: p for p in self.predictors.values()}
        for task, default_dir in self.dirs.items():
            version, path = None, Path(default_dir)
            if wanted.get(task):
                assert self.registry is not None
                version, path = resolve_version(self.registry.open(), task, wanted[task], self.cache_dir)
            current = self.predictors.get(task)
            if (
                current is not None
                and current.model_dir == path
                and (version is None or current.version == version)
            ):
                continue
            digest = artifact_digest(path)
            shared = loaded.get(digest)
            pred = (
                shared.copy_at(path, digest, task, version)
                if shared is not None
                else OnnxPredictor(
                    path, self.n_threads, self.max_length, self.model_batch_size, version=version, task=task
                )
            )
            loaded[digest] = pred
            languages = list(pred.info.languages)
            # One assignment each: a batch already running keeps the predictor it looked up.
            self.languages = {**self.languages, task: languages}
            self.predictors = {**self.predictors, task: pred}
            changed.append(task)
            log.info(
                "loaded %s model %s from %s with %d ORT threads, max_length %d",
                task,
                pred.version,
                pred.model_dir,
                self.n_threads,
                pred.max_length,
            )
        return changed

    async def reconfigure(self, config: dict[str, Any]) -> None:
        max_batch, wait_s, wanted = parse_user_config(config)
        batcher: Any = self._classify  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(max_batch)
        batcher.set_batch_wait_timeout_s(wait_s)
        # In a thread: this replica keeps answering with the old model while the new loads.
        await asyncio.to_thread(self.apply_versions, wanted)
        candidate = CandidateConfig.from_user_config(config.get("candidate"))
        canary: Any = self._classify_canary
        canary.set_max_batch_size(max_batch)
        canary.set_batch_wait_timeout_s(wait_s)
        await asyncio.to_thread(self.apply_candidate, candidate)

    def info(self) -> ServedModels:
        """The model serving each task, and the default task."""
        self._ensure_loaded()
        tasks = {task: self._task_model(task, p) for task, p in self.predictors.items()}
        # What canary keywords are answered by (none unless canary_share > 0).
        candidate = {task: self._task_model(task, p) for task, p in self.canary_models.items()}
        share = self.candidate.canary_share if candidate else 0.0
        return ServedModels(self.default_task, tasks, candidate, share)

    def _task_model(self, task: str, p: OnnxPredictor) -> TaskModel:
        return TaskModel(
            version=p.version,
            labels=tuple(p.labels),
            languages=tuple(self.languages.get(task) or p.info.languages),
            max_length=p.max_length,
            model_dir=str(p.model_dir),
            breakdown_method=p.head.breakdown_method,
            adjustment=p.head.adjustment,
            counting=p.head.counting,
        )

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)  # reconfigure() sets them
    async def _classify(self, requests: list[ClassifyCall]) -> list[TaskAnswers]:
        t0 = time.perf_counter()
        out = run_batch(self.predictors, requests, self.drift_tap)
        # Model time per text of this batch: the live side of the shadow's latency figures.
        self._live_ms = 1000 * (time.perf_counter() - t0) / max(1, sum(len(r[1]) for r in requests))
        return out

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _classify_canary(self, requests: list[ClassifyCall]) -> list[TaskAnswers]:
        return run_batch(self.canary_models, requests)

    async def classify_tasks(
        self, texts: list[str], tasks: list[str], shadow: ShadowTag | None = None, canary: bool = False
    ) -> ClassifyResult:
        """Per task: (model version that produced them, rows of label, confidence and all
        scores per text). Tasks served by one artifact cost one encoder pass together.

        `canary`: tasks the candidate has are answered by it. `shadow` (the texts' post
        ids): after the answer is ready, the sampled share is queued for the candidate."""
        self._ensure_loaded()
        for task in tasks:
            if task not in self.predictors:
                raise UnknownTaskError(task, list(self.predictors))
        if not texts:
            return {t: (self.predictors[t].version, []) for t in tasks}
        canary_models = self.canary_models if canary else {}
        by_candidate = tuple(t for t in tasks if t in canary_models)
        live = tuple(t for t in tasks if t not in canary_models)
        answers: TaskAnswers = {}
        if live:
            self._live_calls += 1
            try:
                answers.update(await self._classify((live, texts, shadow.source if shadow else "")))
            finally:
                self._live_calls -= 1
        if by_candidate:
            answers.update(await self._classify_canary((by_candidate, texts)))
        if shadow is not None and live:
            self._offer_shadow(shadow, texts, {t: answers[t] for t in live})
        log.debug("classified %d texts (%s)", len(texts), ",".join(tasks))
        return {t: (pred.version, probs_to_rows(probs, pred.labels)) for t, (pred, probs) in answers.items()}

    def _offer_shadow(self, tag: ShadowTag, texts: Sequence[str], live: TaskAnswers) -> None:
        """Queue the sampled posts for the candidate; never waits, never raises."""
        live_rows = {t: (p.version, tuple(p.labels), probs) for t, (p, probs) in live.items()}
        offer_sampled(self.shadow, self.candidate, self.shadow_models, tag, texts, live_rows, self._live_ms)

    def apply_candidate(self, cfg: CandidateConfig) -> list[str]:
        """Load (or drop) the candidate version for every task the registry has it for."""
        if cfg.active and self.registry is None:
            raise ModelVersionError("candidate is set but the Classifier was given no registry")
        opts = (self.n_threads, self.max_length, self.model_batch_size)
        shadow, canary = load_candidate(self.registry, list(self.dirs), cfg, self.cache_dir, *opts)
        self.candidate, self.shadow_models, self.canary_models = cfg, shadow, canary
        return list(shadow)

    def shadow_status(self) -> tuple[CandidateConfig, ShadowCounts]:
        return self.candidate, self.shadow.counts

    def drain_shadow(self, timeout_s: float = 30.0) -> bool:
        """Wait for queued shadow jobs (tests and benchmarks)."""
        return self.shadow.drain(timeout_s)

    async def classify_versioned(
        self, texts: list[str], task: str | None = None
    ) -> tuple[str, list[PredictionRow]]:
        """(model version that produced them, rows): label, confidence and all scores per text."""
        task = task or self.default_task
        return (await self.classify_tasks(texts, [task]))[task]

    async def classify(self, texts: list[str], task: str | None = None) -> list[PredictionRow]:
        """Label, confidence and all scores for each text, in order, from the task's model."""
        return (await self.classify_versioned(texts, task))[1]

    def check_health(self) -> None:
        """Serve calls this every health_check_period_s: each loaded graph must still answer
        (a few milliseconds for one short text); an exception marks the replica unhealthy
        and Serve replaces it."""
        for pred in {id(p.session): p for p in self.predictors.values()}.values():
            out = pred.run_ids([[101, 102]])
            if not all(np.isfinite(v).all() for v in out.values()):
                raise RuntimeError(f"model {pred.version} returned non-finite logits")
