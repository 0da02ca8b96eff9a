"""Shadow scoring: a candidate version scores a sampled share of the posts the live version
scored, after the live answer has left, on one background thread at the lowest CPU priority.

The live path only puts a job on a bounded queue (never blocks: a full queue drops the job
and counts it), so a candidate that is slow, or raises, changes no answer and adds no latency.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve_app.lifecycle.rollout import CandidateConfig, in_shadow
from serve_app.model.predictor import OnnxPredictor, artifact_digest
from serve_app.model.registry import RegistryError, RegistrySpec, resolve_version
from serve_app.monitoring import metrics

log = logging.getLogger("ray.serve.emotion_monitor.shadow")


@dataclass(frozen=True)
class ShadowTag:
    """Which posts a Classifier call scores: lets the Classifier sample and pair them."""

    source: str
    post_ids: tuple[str, ...]


@dataclass(frozen=True)
class ShadowPair:
    """One post scored by both versions of one task's head (a row of `shadow_pairs`)."""

    source: str
    post_id: str
    task: str
    live_version: str
    candidate_version: str
    live_label: str
    candidate_label: str
    live_probs: tuple[float, ...]
    candidate_probs: tuple[float, ...]
    live_ms: float
    candidate_ms: float


@dataclass(frozen=True)
class ShadowJob:
    """Sampled posts of one live call: their texts and, per task, the live version and probs."""

    source: str
    post_ids: tuple[str, ...]
    texts: tuple[str, ...]
    live: Mapping[str, tuple[str, tuple[str, ...], np.ndarray]]  # version, labels (logit order), probs
    live_ms: float  # live model time per post in its batch


@dataclass
class ShadowCounts:
    queued: int = 0
    dropped: int = 0  # the queue was full
    failed: int = 0  # the candidate or the store raised
    stored: int = 0  # pairs
    errors: list[str] = field(default_factory=list)


def make_pairs(
    job: ShadowJob, candidates: Mapping[str, OnnxPredictor], cand_ms: float, probs: Mapping[str, np.ndarray]
) -> list[ShadowPair]:
    """Pairs of a job, for every task the candidate has a head for. Each version's label
    comes from its own head's labels; the candidate's probabilities are stored in the live
    head's label order (when both heads have the same labels) so the two rows line up."""
    pairs: list[ShadowPair] = []
    for task, (live_version, live_labels, live_probs) in job.live.items():
        cand = candidates.get(task)
        if cand is None or task not in probs:
            continue
        cand_labels = cand.info.heads[task].labels
        order = (
            [cand_labels.index(lab) for lab in live_labels] if set(cand_labels) == set(live_labels) else None
        )
        for i, pid in enumerate(job.post_ids):
            lp, cp = live_probs[i], probs[task][i]
            pairs.append(
                ShadowPair(
                    job.source,
                    pid,
                    task,
                    live_version,
                    cand.version,
                    live_labels[int(np.argmax(lp))],
                    cand_labels[int(np.argmax(cp))],
                    tuple(float(x) for x in lp),
                    tuple(float(x) for x in (cp[order] if order is not None else cp)),
                    job.live_ms,
                    cand_ms,
                )
            )
    return pairs


def lower_thread_priority() -> None:
    """Nice this thread (Linux schedules threads on their own) so live batches come first."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class ShadowWorker:
    """One daemon thread that scores queued jobs with the candidate and stores the pairs."""

    def __init__(
        self,
        candidates: Callable[[], Mapping[str, OnnxPredictor]],
        store: Callable[[Sequence[ShadowPair]], None],
        max_queue: int = 64,
        idle: Callable[[], bool] = lambda: True,
        chunk: int = 8,
        max_wait_s: float = 5.0,
    ) -> None:
        self._candidates, self._store = candidates, store
        # Background priority beyond the nice value: each chunk of texts waits (up to
        # max_wait_s, so the queue still drains under constant load) until no live batch runs.
        self._idle, self.chunk, self.max_wait_s = idle, chunk, max_wait_s
        self._queue: queue.Queue[ShadowJob] = queue.Queue(maxsize=max_queue)
        self.counts = ShadowCounts()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def offer(self, job: ShadowJob) -> bool:
        """Queue a job without waiting; False (counted) when the queue is full."""
        self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.counts.dropped += len(job.post_ids)
            metrics.record_shadow("dropped", len(job.post_ids))
            return False
        self.counts.queued += len(job.post_ids)
        metrics.record_shadow("queued", len(job.post_ids))
        return True

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued job is done (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        lower_thread_priority()
        while True:
            job = self._queue.get()
            try:
                self._handle(job)
            except Exception as exc:  # a shadow never takes the replica down
                self.counts.failed += len(job.post_ids)
                metrics.record_shadow("failed", len(job.post_ids))
                self.counts.errors = [*self.counts.errors[-4:], f"{type(exc).__name__}: {exc}"]
                log.warning("shadow scoring failed: %r", exc)
            finally:
                self._queue.task_done()

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while not self._idle() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _handle(self, job: ShadowJob) -> None:
        candidates = dict(self._candidates())
        # Tasks sharing one artifact share one session: one pass answers all their heads.
        by_session: dict[int, OnnxPredictor] = {}
        for task in job.live:
            if task in candidates:
                by_session.setdefault(id(candidates[task].session), candidates[task])
        if not by_session:
            return
        parts: dict[str, list[np.ndarray]] = {}
        spent = 0.0
        for start in range(0, len(job.texts), self.chunk):
            self._wait_idle()
            t0 = time.perf_counter()
            for pred in by_session.values():
                for task, p in pred.probabilities_all(list(job.texts[start : start + self.chunk])).items():
                    parts.setdefault(task, []).append(p)
            spent += time.perf_counter() - t0
        probs = {task: np.concatenate(p) for task, p in parts.items()}
        cand_ms = 1000 * spent / max(1, len(job.texts))
        pairs = make_pairs(job, candidates, cand_ms, probs)
        if pairs:
            self._store(pairs)
            self.counts.stored += len(pairs)
            metrics.record_shadow("stored", len(pairs))


def _predictors(
    paths: Mapping[str, Path], version: str, threads: int, max_length: int | None, batch: int
) -> dict[str, OnnxPredictor]:
    """A predictor per task; tasks whose artifacts are the same bytes share a session."""
    loaded: dict[str, OnnxPredictor] = {}
    out: dict[str, OnnxPredictor] = {}
    for task, path in paths.items():
        digest = artifact_digest(path)
        shared = loaded.get(digest)
        out[task] = loaded[digest] = (
            shared.copy_at(path, digest, task, version)
            if shared is not None
            else OnnxPredictor(path, threads, max_length, batch, version=version, task=task)
        )
    return out


def load_candidate(
    registry: RegistrySpec | None,
    tasks: Sequence[str],
    cfg: CandidateConfig,
    cache_dir: Path,
    threads: int,
    max_length: int | None,
    batch: int,
) -> tuple[dict[str, OnnxPredictor], dict[str, OnnxPredictor]]:
    """(shadow, canary) predictors of the candidate for each task the registry has it for.

    Shadow ones run one ORT thread (all their work on the niced shadow thread); canary
    ones, loaded only when canary_share > 0, run the live model's threads."""
    if not cfg.active or registry is None:
        return {}, {}
    assert cfg.version is not None
    reg = registry.open()
    paths: dict[str, Path] = {}
    for task in tasks:
        try:
            paths[task] = resolve_version(reg, task, cfg.version, cache_dir)[1]
        except RegistryError:
            continue  # no artifact of this version for the task: live only
    if not paths:
        raise RegistryError(f"candidate {cfg.version!r} is not in the registry under any of {list(tasks)}")
    shadow = _predictors(paths, cfg.version, 1, max_length, batch)
    canary = _predictors(paths, cfg.version, threads, max_length, batch) if cfg.canary_share > 0 else {}
    log.info(
        "candidate %s for %s (shadow %.2f, canary %.2f)",
        cfg.version,
        ",".join(paths),
        cfg.shadow_share,
        cfg.canary_share,
    )
    return shadow, canary


def offer_sampled(
    worker: ShadowWorker,
    cfg: CandidateConfig,
    models: Mapping[str, OnnxPredictor],
    tag: ShadowTag,
    texts: Sequence[str],
    live: Mapping[str, tuple[str, tuple[str, ...], np.ndarray]],
    live_ms: float,
) -> None:
    """Queue the sampled posts (sticky by post id) of a live call for the candidate; called
    after the live answer is ready, never waits and never raises."""
    try:
        if not models or len(tag.post_ids) != len(texts):
            return
        idx = [i for i, pid in enumerate(tag.post_ids) if in_shadow(pid, cfg)]
        tasks = [t for t in live if t in models]
        if idx and tasks:
            worker.offer(
                ShadowJob(
                    tag.source,
                    tuple(tag.post_ids[i] for i in idx),
                    tuple(texts[i] for i in idx),
                    {t: (live[t][0], live[t][1], live[t][2][idx]) for t in tasks},
                    live_ms,
                )
            )
    except Exception as exc:  # the live answer is ready; a shadow problem must not touch it
        log.warning("shadow not queued: %r", exc)


def shadow_sink(postgres_url: str | None) -> Callable[[Sequence[ShadowPair]], None]:
    """Where the Classifier's shadow pairs go: PostgreSQL, or nowhere without one."""
    if postgres_url is None:
        return lambda pairs: None
    from serve_app.stores.shadow_store import ShadowSink

    return ShadowSink(postgres_url)
