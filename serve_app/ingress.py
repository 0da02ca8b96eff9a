"""The HTTP ingress: FastAPI routes in a Serve deployment that chains the others by handle."""
# No `from __future__ import annotations` here: FastAPI must see real types through
# Serve's method wrapping, or request bodies turn into query parameters.

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from deployments.aggregator import Counting, strongly_negative
from deployments.classifier import ClassifyCall, TaskAnswers, probs_to_rows, run_batch
from serve_app import metrics
from serve_app.cache import AnalysisCache
from serve_app.defaults import CACHE_TTL_S, MAX_BATCH_SIZE
from serve_app.errors import SourceConfigError, SourceError
from serve_app.held_records import HeldRecords
from serve_app.history import make_record, queue_track
from serve_app.http_api import (
    AUTH,
    ERRORS,
    RateLimited,
    ServiceUnavailable,
    TaskNotServed,
    api,
)
from serve_app.inline import INLINE_MAX_TEXTS, InlineModels
from serve_app.language import UNDETERMINED, count_languages, is_supported, readable_languages
from serve_app.posts import FetchResult
from serve_app.preprocess import post_text
from serve_app.question import Question
from serve_app.records import PredictionRow
from serve_app.request_budget import Priority
from serve_app.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    ErrorResponse,
    HealthResponse,
    LabelsResponse,
    PredictRequest,
    PredictResponse,
    SyncStatus,
)
from serve_app.score_cache import ScoreCache
from serve_app.security import RateLimiter, replica_share
from serve_app.single_flight import SingleFlight
from serve_app.watch_api import WatchDesk

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.ingress")

# A replica died or is being replaced: the call never ran to completion, so it may be re-sent.
RETRYABLE = (
    ActorDiedError,
    ActorUnavailableError,
    RayActorError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
)


@dataclass(frozen=True)
class IngressConfig:
    default_source: str = "reddit"
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    api_key: str | None = field(default=None, repr=False)
    analyze_rate_per_min: float = 0.0
    analyze_burst: int = 20
    replicas: int = 1  # ingress replicas sharing the per-client /analyze limit
    cache: bool = True
    history: bool = True  # leave each inference run in Redis for the PostgreSQL sync
    cache_ttl_s: int = CACHE_TTL_S
    model_info_ttl_s: float = 10.0
    classify_timeout_s: float = 60.0
    call_retries: int = 5  # re-sends of an idempotent call whose replica died
    max_inflight: int = 128  # requests doing model work at once; more get 503 + Retry-After
    negative_threshold: float = 0.8  # sentiment confidence for "strongly negative"
    partial_ttl_s: int = 60  # a partial answer is cached this long: the source may recover soon
    # Records of analyses answered while Redis is down go to an fsynced journal here before
    # the answer leaves (serve_app.journal); None keeps them in memory only (tests, no disk).
    journal_dir: str | None = None
    postgres_url: str | None = field(default=None, repr=False)  # watchlists, trends, alerts
    max_unsaved: int = 10_000  # records held in memory when the journal cannot be written
    unsaved_retry_s: float = 1.0  # how often held records are offered to Redis again
    # Concurrent analyses of one question wait for one computation (a Redis lock across
    # replicas); a waiter gives up and computes itself after this long.
    single_flight_s: float = 90.0
    score_ttl_s: int = 7 * 86_400  # per-post scores kept this long (0: no per-post cache)
    unsaved_shutdown_s: float = 10.0  # last tries at a graceful shutdown (Serve allows 20 s)
    app_name: str = "emotion-monitor"
    # Short /predict calls classified in the ingress itself (see serve_app.inline).
    predict_in_ingress: bool = False
    inline_threads: int = 1  # ONNX Runtime threads per batch (two batches run at once)
    inline_batch_size: int = MAX_BATCH_SIZE
    inline_batch_wait_s: float = 0.0


def tasks_info(info: dict[str, Any]) -> dict[str, Any]:
    """Per task, its model's description from Classifier.info() (an older single-model
    Classifier describes one task at the top level)."""
    by_task: dict[str, Any] = info.get("tasks", {info.get("default_task", "emotion"): info})
    return by_task


def _unwrap(exc: BaseException) -> BaseException:
    """Ray re-raises a replica's exception wrapped; find ours inside, if it is."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


@serve.deployment(
    ray_actor_options={"num_cpus": 0.2},
    max_ongoing_requests=256,
    logging_config={"enable_access_log": False},
)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        fetcher: DeploymentHandle,
        classifier: DeploymentHandle,
        aggregator: DeploymentHandle,
        cfg: IngressConfig,
    ) -> None:
        self.fetcher = fetcher
        self.classifier = classifier
        self.aggregator = aggregator
        self.cfg = cfg
        api.state.api_key = cfg.api_key  # read by require_api_key, in this replica's process
        self.limiter = (
            RateLimiter(*replica_share(cfg.analyze_rate_per_min, cfg.analyze_burst, cfg.replicas))
            if cfg.analyze_rate_per_min > 0
            else None
        )
        self.cache = AnalysisCache(cfg.redis_url if cfg.cache else None, cfg.cache_ttl_s)
        self.store = AnalysisCache(cfg.redis_url if cfg.history else None, cfg.cache_ttl_s)
        self.held_records = HeldRecords(
            self.store, cfg.journal_dir, cfg.unsaved_retry_s, cfg.unsaved_shutdown_s, cfg.max_unsaved
        )
        self.flights = SingleFlight(self.cache, cfg.single_flight_s)
        self.scores = ScoreCache(self.cache, cfg.score_ttl_s)
        # The watch routes (serve_app.watch_api) run in this process and ask it two things.
        api.state.watch = WatchDesk(
            cfg.postgres_url, cfg.default_source, self._served_tasks, self._rate_limit
        )
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0
        self._inflight = 0
        self.shed_total = 0
        self.inline = InlineModels(cfg.inline_threads) if cfg.predict_in_ingress else None
        batcher: Any = self._inline_batch  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(cfg.inline_batch_size)
        batcher.set_batch_wait_timeout_s(cfg.inline_batch_wait_s)

    async def __del__(self) -> None:
        # Serve awaits this on a graceful shutdown (redeploy, scale-down, `serve delete`).
        held = getattr(self, "held_records", None)  # None when __init__ did not get that far
        if held is not None:
            await held.close()

    async def check_health(self) -> None:
        """Serve calls this every few seconds: a replica that gets no traffic still hands over
        its held records, and the journals of replicas that were killed, once Redis is back."""
        await self.held_records.offer()

    async def _track(self, keyword: str, limit: int, source: str) -> None:
        if self.store.client is None or not self.store.available:
            return
        try:
            await queue_track(self.store.client.pipeline(transaction=False), keyword, limit, source).execute()
        except (redis.RedisError, OSError) as exc:
            self.store.mark_failed(exc)

    async def _model_info(self) -> dict[str, Any]:
        if self._info is None or time.monotonic() - self._info_at > self.cfg.model_info_ttl_s:
            try:
                self._info = await asyncio.wait_for(self.classifier.info.remote(), timeout=10)
            except Exception as exc:
                if self._info is None:
                    raise ServiceUnavailable(f"classifier not ready: {type(exc).__name__}") from None
            self._info_at = time.monotonic()
        assert self._info is not None
        return self._info

    async def _call(self, what: str, send: Callable[[], Any], timeout: float) -> Any:
        """Await a handle call; retry it while the replica that took it died (Serve replaces it).

        Every call made through here is idempotent (fetch, classify, summarize), so a retry on
        another (or the replacement) replica is safe. Anything else, or running out of
        `timeout`, becomes a 503 that says which part failed.
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(send(), timeout=max(0.1, left))
            except (SourceError, SourceConfigError):
                raise
            except TimeoutError:
                raise ServiceUnavailable(f"{what} did not answer within {timeout:.0f} s") from None
            except BackPressureError:
                raise ServiceUnavailable(f"{what} is at capacity; retry shortly", retry_after=1) from None
            except Exception as exc:
                inner = _unwrap(exc)
                if isinstance(inner, SourceError | SourceConfigError):
                    raise inner from None
                attempt += 1
                retryable = isinstance(exc, RETRYABLE) or isinstance(inner, RETRYABLE)
                pause = min(2.0, 0.1 * 2**attempt)
                if retryable and attempt <= self.cfg.call_retries and deadline - time.monotonic() > pause:
                    log.warning("%s: replica lost (%s); retry %d", what, type(exc).__name__, attempt)
                    await asyncio.sleep(pause)
                    continue
                log.warning("%s failed: %s", what, repr(exc)[:300])
                raise ServiceUnavailable(
                    f"{what} unavailable ({type(inner).__name__}); retry shortly"
                ) from None

    @contextlib.contextmanager
    def _admit(self) -> Iterator[None]:
        """Bound the work in flight: beyond `max_inflight` answer 503 now instead of queueing."""
        if self._inflight >= self.cfg.max_inflight:
            self.shed_total += 1
            metrics.record_shed()
            raise ServiceUnavailable(
                f"server busy: {self._inflight} requests in progress (limit {self.cfg.max_inflight})",
                retry_after=1,
            )
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1

    def _plan(
        self, info: dict[str, Any], tasks: Sequence[str] | None, threshold: float | None
    ) -> tuple[list[str], float]:
        """The tasks to run (all served by default) and the strongly-negative threshold."""
        served = list(tasks_info(info))
        chosen = list(tasks) if tasks else served
        missing = [t for t in chosen if t not in served]
        if missing:
            raise TaskNotServed(f"task {missing[0]!r} is not served here; served: {', '.join(served)}")
        return chosen, float(threshold if threshold is not None else self.cfg.negative_threshold)

    @staticmethod
    def _versions(info: dict[str, Any], tasks: list[str]) -> dict[str, str]:
        by_task = tasks_info(info)
        return {t: str(by_task[t]["version"]) for t in tasks}

    @api.post("/analyze", response_model=AnalyzeResponse, responses=ERRORS, dependencies=AUTH)
    async def analyze(self, req: AnalyzeRequest, request: Request) -> AnalyzeResponse:
        """Fetch up to `limit` posts about `keyword`, classify them, return the breakdowns."""
        started = time.perf_counter()
        self._rate_limit(request)
        source = req.source or self.cfg.default_source
        info = await self._model_info()
        tasks, threshold = self._plan(info, req.tasks, req.negative_threshold)
        log.debug("analyze %r limit=%d source=%s tasks=%s", req.keyword, req.limit, source, ",".join(tasks))
        question = Question(
            req.keyword, req.limit, source, tuple(tasks), threshold, req.lang, req.include_other_languages
        )
        key = question.key(self._versions(info, tasks))
        cached = await self.cache.get(key)
        if self.held_records.due:
            await self.held_records.save(None)  # Redis may be back: hand over what was held
        hit = cached is not None and (not req.return_plot or bool(cached.get("plot_base64")))
        metrics.record_cache(hit)
        if cached is not None and hit:
            await self._track(req.keyword, req.limit, source)
            cached.update(source="cache", time=round(time.perf_counter() - started, 4))
            if not req.return_plot:
                cached["plot_base64"] = None
            return AnalyzeResponse(**cached)

        await self._track(req.keyword, req.limit, source)
        with self._admit():
            # Concurrent askers of this question (in any replica, or the warmer) share one run.
            result, computed = await self.flights.run(
                key,
                lambda: self._infer(question, info, plot=req.return_plot),
                with_plot=req.return_plot,
            )
        if not req.return_plot:
            result["plot_base64"] = None
        source_of_answer = "inference" if computed else "cache"
        return AnalyzeResponse(
            **result, source=source_of_answer, time=round(time.perf_counter() - started, 4)
        )

    async def _infer(
        self, q: Question, info: dict[str, Any], plot: bool = False, priority: Priority = "user"
    ) -> dict[str, Any]:
        """Fetch, pick the posts the models can read, classify per task, aggregate; cache and record."""
        keyword, limit, source, tasks = q.keyword, q.limit, q.source, list(q.tasks)
        threshold, include_other = q.negative_threshold, q.include_other_languages
        fetched: FetchResult = await self._call(
            f"source {source!r}",
            lambda: self.fetcher.fetch.remote(source, keyword, limit, priority),
            timeout=60,
        )
        posts = fetched.posts
        by_task = tasks_info(info)
        readable = readable_languages(by_task[t].get("languages", ["en"]) for t in tasks)
        langs = [p.lang or UNDETERMINED for p in posts]
        keep = [i for i, lg in enumerate(langs) if include_other or is_supported(lg, readable)]
        kept = set(keep)
        metrics.record_posts(langs, [i in kept for i in range(len(posts))])
        texts = [post_text(posts[i].title, posts[i].body) for i in keep]
        excluded = {"language": len(posts) - len(keep), **fetched.excluded}
        excluded = {reason: n for reason, n in excluded.items() if n}

        ids = [posts[i].id for i in keep]
        preds, versions, newly = await self._score(source, ids, texts, tasks, info)
        if versions != self._versions(info, tasks):
            # A model version was rolled since `info` was read: re-read info next time. The
            # answer is cached under the versions that actually produced it.
            self._info_at = 0.0
        counting = {t: Counting(by_task[t]["breakdown_method"], by_task[t]["adjustment"]) for t in tasks}
        summary: dict[str, Any] = await self._call(
            "aggregator",
            lambda: self.aggregator.summarize.remote(
                keyword, preds, plot, counting, fetched.partial is not None
            ),
            30,
        )
        negative = None
        if "sentiment" in preds:
            negative = strongly_negative([posts[i].id for i in keep], preds["sentiment"], threshold)
        result = {
            "keyword": keyword,
            "count": len(posts),
            "agg": summary.get("agg", []),
            "emotional_agg": summary.get("emotional_agg"),
            "sentiment_agg": summary.get("sentiment_agg"),
            "breakdown_methods": {t: c.method for t, c in counting.items()},
            "strongly_negative": negative,
            "tasks": tasks,
            "scored": len(keep),
            "languages": count_languages(langs),
            "excluded": len(posts) - len(keep),
            "excluded_reasons": excluded,
            "newly_scored": newly,
            "partial": fetched.partial is not None,
            "partial_reason": fetched.partial,
            "model_versions": versions,
            "plot_base64": summary["plot_base64"],
            "post_source": source,
            "model_version": versions.get("emotion") or next(iter(versions.values())),
        }
        await self.cache.set(q.key(versions), result, self.cfg.partial_ttl_s if fetched.partial else None)
        if self.cfg.history and posts:
            rec = make_record(
                keyword,
                source,
                limit,
                q.lang,
                result["model_version"],
                summary.get("agg", []),
                [p.as_dict() for p in posts],
                preds,
                kept=keep,
                sentiment_agg=summary.get("sentiment_agg"),
                model_versions=versions,
                strongly_negative=negative,
                emotional_agg=summary.get("emotional_agg"),
                breakdown_methods=result["breakdown_methods"],
                partial_reason=fetched.partial,
                excluded=excluded,
            )
            await self.held_records.save(rec)
        return result

    def _rate_limit(self, request: Request) -> None:
        """The per-client limit on requests that start work (analyses, new watches)."""
        if self.limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = self.limiter.check(client)
            if wait > 0:
                raise RateLimited(wait)

    async def _served_tasks(self, tasks: Sequence[str] | None) -> list[str]:
        chosen, _ = self._plan(await self._model_info(), tasks, None)
        return chosen

    async def watch_run(self, keyword: str, limit: int, source: str, tasks: list[str]) -> dict[str, Any]:
        """For the keyword monitor: a fresh analysis (new posts since the last poll), sharing
        the per-post score cache, single flight, history path and background priority."""
        info = await self._model_info()
        chosen, threshold = self._plan(info, tasks, None)
        question = Question(keyword, limit, source, tuple(chosen), threshold)
        result, _ = await self.flights.run(
            question.key(self._versions(info, chosen)),
            lambda: self._infer(question, info, priority="background"),
        )
        return {k: result.get(k) for k in ("count", "scored", "newly_scored", "partial")}

    async def _score(
        self, source: str, ids: list[str], texts: list[str], tasks: list[str], info: dict[str, Any]
    ) -> tuple[dict[str, list[PredictionRow]], dict[str, str], int]:
        """Rows per task for these posts, the model versions, and how many posts the models ran on.

        Posts scored before under the served versions come from the per-post score cache;
        only the others go to the Classifier (every requested head at once: one encoder pass).
        """
        expected = self._versions(info, tasks)
        known = await self.scores.get(source, ids, expected)
        todo = [j for j, pid in enumerate(ids) if any(pid not in known[t] for t in tasks)]
        versions = expected
        fresh: dict[str, dict[str, PredictionRow]] = {t: {} for t in tasks}
        if todo:
            answers: dict[str, tuple[str, list[PredictionRow]]] = await self._call(
                "classifier",
                lambda: self.classifier.classify_tasks.remote([texts[j] for j in todo], tasks),
                self.cfg.classify_timeout_s,
            )
            versions = {t: version for t, (version, _) in answers.items()}
            if versions != expected and len(todo) < len(ids):
                # A model version was rolled meanwhile: cached rows belong to the old one.
                todo = list(range(len(ids)))
                answers = await self._call(
                    "classifier",
                    lambda: self.classifier.classify_tasks.remote(texts, tasks),
                    self.cfg.classify_timeout_s,
                )
                versions = {t: version for t, (version, _) in answers.items()}
                known = {t: {} for t in tasks}
            for t, (_, rows) in answers.items():
                fresh[t] = {ids[j]: row for j, row in zip(todo, rows, strict=True)}
            await self.scores.put(source, fresh, versions)
        metrics.record_scores(len(todo), len(ids) - len(todo))
        preds = {t: [fresh[t].get(pid) or known[t][pid] for pid in ids] for t in tasks}
        return preds, versions, len(todo)

    async def refresh(self, keyword: str, limit: int, source: str, refresh_below_s: int) -> bool:
        """For the cache warmer: re-run an analysis whose cache entry is missing or expiring."""
        info = await self._model_info()
        tasks, threshold = self._plan(info, None, None)
        question = Question(keyword, limit, source, tuple(tasks), threshold)
        key = question.key(self._versions(info, tasks))
        if self.cache.client is None:
            return False
        try:
            ttl = int(await self.cache.client.ttl(key))
        except (redis.RedisError, OSError):
            return False
        if ttl > refresh_below_s:
            return False
        _, computed = await self.flights.run(
            key,
            lambda: self._infer(question, info, priority="background"),
        )
        return computed

    # Two batches at once, each on one ONNX Runtime thread (`inline_threads`): while one
    # batch's Python (tokenizing, rows, responses) holds the GIL the other keeps a core busy.
    # Measured at 32 users on 2 cores with two ingress replicas: 606-632 RPS against 517-547
    # with one batch at a time (docs/benchmarks.md).
    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
    async def _inline_batch(self, requests: list[ClassifyCall]) -> list[TaskAnswers]:
        assert self.inline is not None
        # In a thread (ONNX Runtime releases the GIL): the loop keeps parsing requests, so
        # the next batch fills while this one runs, and cache hits and /healthz never wait.
        return await asyncio.to_thread(run_batch, self.inline.predictors, requests)

    async def _classify_inline(self, task: str, texts: list[str], info: dict[str, Any]) -> Any:
        """(version, rows) from the ingress's own copy of the model, or None: ask the Classifier."""
        if self.inline is None or not texts or len(texts) > INLINE_MAX_TEXTS:
            return None
        by_task = tasks_info(info)
        if self.inline.lookup(task, by_task[task]) is None:
            return None
        pred, probs = (await self._inline_batch(((task,), texts)))[task]
        return pred.version, probs_to_rows(probs, pred.labels)

    @api.post("/predict", response_model=PredictResponse, responses=ERRORS, dependencies=AUTH)
    async def predict(self, req: PredictRequest, request: Request) -> Response:
        """Classify one text (`text`) or up to 256 (`texts`) with the `task`'s model."""
        started = time.perf_counter()
        info = await self._model_info()
        tasks, _ = self._plan(info, [req.task], None)
        texts = req.all_texts()
        with self._admit():
            done = await self._classify_inline(req.task, texts, info)
            if done is None:
                version, rows = await self._call(
                    "classifier",
                    lambda: self.classifier.classify_versioned.remote(texts, req.task),
                    self.cfg.classify_timeout_s,
                )
            else:
                version, rows = done
        if version != self._versions(info, tasks)[req.task]:
            self._info_at = 0.0  # a version was rolled: re-read info on the next request
        body = PredictResponse(
            predictions=rows,
            task=req.task,
            model_version=version,
            time=round(time.perf_counter() - started, 4),
        )
        # Serialized here, once: a returned model would be validated again against
        # `response_model` and encoded twice, a cost measured at hundreds of calls per second.
        # Which process ran the model: operators (and tests) can tell the two paths apart.
        return Response(
            body.model_dump_json(),
            media_type="application/json",
            headers={"X-Inference": "classifier" if done is None else "ingress"},
        )

    @api.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def healthz(self) -> JSONResponse:
        """Deep health: the model answers and Redis is reachable (degraded without Redis)."""
        version = None
        try:
            info = await asyncio.wait_for(self.classifier.info.remote(), timeout=5)
            version = info["version"]
        except Exception as exc:  # any failure means "no model answers": report, never raise
            log.warning("healthz: the Classifier did not answer info() within 5 s: %r", exc)
        redis_state = await self.cache.ping()
        status = "unavailable" if version is None else ("degraded" if redis_state == "down" else "ok")
        body = HealthResponse(
            status=status, model_loaded=version is not None, model_version=version, redis=redis_state
        )
        return JSONResponse(body.model_dump(), status_code=503 if version is None else 200)

    @api.get(
        "/sync/status",
        response_model=SyncStatus,
        responses={503: {"model": ErrorResponse}},
        dependencies=AUTH,
    )
    async def sync_status(self, request: Request) -> SyncStatus:
        """The history sync: backlog, records synced, last sync, CPU and why it is paused."""
        from deployments.background import get_actor, sync_actor_name

        try:
            state = await asyncio.wait_for(
                get_actor(sync_actor_name(self.cfg.app_name)).status.remote(), timeout=10
            )
        except Exception as exc:
            raise ServiceUnavailable(
                f"history sync not running ({type(exc).__name__}); is PostgreSQL configured?", 30
            ) from None
        return SyncStatus(**state, unsaved_in_ingress=self.held_records.held)

    @api.get("/labels", response_model=LabelsResponse, dependencies=AUTH)
    async def labels(self, request: Request) -> LabelsResponse:
        """The labels the model predicts, in output order."""
        info = await self._model_info()
        by_task = info.get("tasks", {})
        return LabelsResponse(
            labels=info["labels"],
            model_version=info["version"],
            tasks={t: list(v["labels"]) for t, v in by_task.items()},
        )
