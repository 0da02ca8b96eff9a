"""The HTTP ingress: FastAPI routes in a Serve deployment that chains the others by handle."""
# No `from __future__ import annotations` here: FastAPI must see real types through
# Serve's method wrapping, or request bodies turn into query parameters.

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.aggregator import Counting, strongly_negative
from deployments.classifier import ClassifyCall, TaskAnswers, probs_to_rows, run_batch
from serve_app import __version__, metrics
from serve_app.cache import AnalysisCache, analysis_key
from serve_app.errors import SourceConfigError, SourceError
from serve_app.history import make_record, queue_record, queue_track
from serve_app.inline import INLINE_MAX_TEXTS, InlineModels
from serve_app.journal import Journal, JournalError
from serve_app.language import UNDETERMINED, count_languages, is_supported, readable_languages
from serve_app.posts import FetchResult
from serve_app.preprocess import post_text
from serve_app.request_budget import Priority
from serve_app.schemas import (
    MAX_BODY_BYTES,
    AnalyzeRequest,
    AnalyzeResponse,
    ErrorResponse,
    HealthResponse,
    LabelsResponse,
    PredictRequest,
    PredictResponse,
    SyncStatus,
)
from serve_app.security import RateLimiter, key_matches, replica_share
from serve_app.single_flight import SingleFlight

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

api = FastAPI(
    title="emotion-monitor",
    version=__version__,
    description="Emotion breakdown of recent posts about a keyword, and single-text emotion classification.",
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in {
        400: "The body is not UTF-8 JSON or is nested too deeply, or a task this service does not serve",
        401: "Missing or invalid X-API-Key (when the service has a key configured)",
        413: "Request body over the size limit",
        422: "Invalid input: the message says which field and why",
        429: "Too many /analyze requests from this client; retry after Retry-After seconds",
        502: "The post source failed (named in the message)",
        503: "A part of the service is unavailable or rate limited; retry after Retry-After seconds",
        504: "The post source did not answer in time",
    }.items()
}


class BodyLimit:
    """Refuse oversized bodies from their Content-Length, before reading them into memory.

    Plain ASGI rather than `@api.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    every request through an extra task group and a streamed response, a cost measured
    on each /predict call at hundreds of requests per second (docs/benchmarks.md).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    size = value.decode("latin-1")
                    if not size.isdigit() or int(size) > MAX_BODY_BYTES:
                        detail = f"request body of {size} bytes is over the {MAX_BODY_BYTES} byte limit"
                        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


api.add_middleware(BodyLimit)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    # FastAPI's words for invalid UTF-8 or JSON nested past Python's recursion limit.
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return JSONResponse(
            {"detail": "the body is not parseable: send UTF-8 JSON nested at most ~500 levels deep"},
            status_code=400,
        )
    return await http_exception_handler(request, exc)


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f} s")
        self.retry_after = retry_after


@api.exception_handler(RateLimited)
async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
    seconds = max(1, math.ceil(exc.retry_after))
    return JSONResponse(
        {"detail": f"too many /analyze requests from this client; retry in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


class ServiceUnavailable(Exception):
    def __init__(self, detail: str, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


@api.exception_handler(SourceError)
async def _source_error(_: Request, exc: SourceError) -> JSONResponse:
    status = {"timeout": 504, "rate_limited": 503}.get(exc.kind, 502)
    headers = {"Retry-After": str(int(exc.retry_after or 30))} if status == 503 else None
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)


@api.exception_handler(SourceConfigError)
async def _source_config_error(_: Request, exc: SourceConfigError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=503, headers={"Retry-After": "60"})


@api.exception_handler(ServiceUnavailable)
async def _unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail}, status_code=503, headers={"Retry-After": str(int(exc.retry_after))}
    )


class TaskNotServed(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@api.exception_handler(TaskNotServed)
async def _task_not_served(_: Request, exc: TaskNotServed) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=400)


class Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@api.exception_handler(Unauthorized)
async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "ApiKey"})


async def require_api_key(request: Request) -> None:
    """With a key configured, every API route but /healthz needs it in X-API-Key.

    A route dependency rather than a check inside each handler: it runs before the body is
    validated, so a caller without the key learns nothing about the API from 422s.
    `async` so FastAPI calls it in the event loop, not through its thread pool.
    """
    expected: str | None = getattr(request.app.state, "api_key", None)
    if expected:
        given = request.headers.get("x-api-key")
        if given is None:
            raise Unauthorized("missing X-API-Key header")
        if not key_matches(given, expected):
            raise Unauthorized("invalid API key")


AUTH = [Depends(require_api_key)]


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
    cache_ttl_s: int = 3600
    model_info_ttl_s: float = 10.0
    classify_timeout_s: float = 60.0
    call_retries: int = 5  # re-sends of an idempotent call whose replica died
    max_inflight: int = 128  # requests doing model work at once; more get 503 + Retry-After
    negative_threshold: float = 0.8  # sentiment confidence for "strongly negative"
    partial_ttl_s: int = 60  # a partial answer is cached this long: the source may recover soon
    # Records of analyses answered while Redis is down go to an fsynced journal here before
    # the answer leaves (serve_app.journal); None keeps them in memory only (tests, no disk).
    journal_dir: str | None = None
    max_unsaved: int = 10_000  # records held in memory when the journal cannot be written
    unsaved_retry_s: float = 1.0  # how often held records are offered to Redis again
    # Concurrent analyses of one question wait for one computation (a Redis lock across
    # replicas); a waiter gives up and computes itself after this long.
    single_flight_s: float = 90.0
    unsaved_shutdown_s: float = 10.0  # last tries at a graceful shutdown (Serve allows 20 s)
    background: Any = field(default=None, compare=False)  # BackgroundConfigs, or None
    app_name: str = "emotion-monitor"
    # Short /predict calls classified in the ingress itself (see serve_app.inline).
    predict_in_ingress: bool = False
    inline_threads: int = 1  # ONNX Runtime threads per batch (two batches run at once)
    inline_batch_size: int = 32
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
        self._unsaved: collections.deque[dict[str, Any]] = collections.deque()
        self.journal = Journal(Path(cfg.journal_dir)) if cfg.journal_dir else None
        self._orphans_checked = self.journal is None
        self.flights = SingleFlight(self.cache, cfg.single_flight_s)
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0
        self._inflight = 0
        self.shed_total = 0
        self.inline = InlineModels(cfg.inline_threads) if cfg.predict_in_ingress else None
        batcher: Any = self._inline_batch  # @serve.batch adds these setters at run time
        batcher.set_max_batch_size(cfg.inline_batch_size)
        batcher.set_batch_wait_timeout_s(cfg.inline_batch_wait_s)
        if cfg.background is not None:
            from deployments.background import start_background

            try:
                start_background(cfg.background, app_name=cfg.app_name)
            except Exception as exc:  # the API works without them; /sync/status says so
                log.error("background actors not started: %r", exc)

    @property
    def held(self) -> int:
        """Records not yet in Redis: in the journal, or in memory if it could not be written."""
        return len(self._unsaved) + (self.journal.pending if self.journal else 0)

    async def _push(self, records: list[dict[str, Any]]) -> None:
        """Hand records to Redis in one MULTI; raises if Redis does not take them."""
        assert self.store.client is not None
        pipe = self.store.client.pipeline(transaction=True)
        for rec in records:
            queue_record(pipe, rec)
        try:
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.store.mark_failed(exc)
            raise
        self.store.mark_ok()

    async def _hand_over_held(self) -> None:
        """Offer held records to Redis: this replica's, then those a stopped replica left."""
        if self.store.client is None or not self.store.available:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            if self.journal is not None:
                await self.journal.replay(self._push)
                if not self._orphans_checked:
                    await self.journal.replay_orphans(self._push)
                    self._orphans_checked = True
            while self._unsaved:
                await self._push([self._unsaved[0]])
                self._unsaved.popleft()

    async def _save_record(self, rec: dict[str, Any] | None) -> None:
        """Hand a record to Redis for the sync; while Redis is down, make it durable first.

        Returns only once the record is in Redis or fsynced in the journal: the caller
        answers after that, so an answered analysis survives a `kill -9` of the whole app.
        """
        # One writer at a time: concurrent requests must not write or drop each other's records.
        async with self._flush_lock:
            await self._hand_over_held()  # older records first
            if rec is not None:
                try:
                    if self.held or self.store.client is None or not self.store.available:
                        raise redis.ConnectionError("Redis marked unavailable")
                    await self._push([rec])
                except (redis.RedisError, OSError):
                    self._hold(rec)
        self._trim_unsaved()
        self._keep_offering()

    def _hold(self, rec: dict[str, Any]) -> None:
        if self.journal is not None:
            try:
                self.journal.append(rec)
                return
            except JournalError as exc:
                log.error("%s; holding record %s in memory", exc, rec["query_id"])
        self._unsaved.append(rec)

    def _keep_offering(self) -> None:
        # Held records must not wait for this replica's next /analyze: behind HAProxy another
        # replica may take all the traffic.
        if self.held and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._offer_held())

    async def _offer_held(self) -> None:
        while self.held:
            await asyncio.sleep(self.cfg.unsaved_retry_s)
            try:
                await self._save_record(None)
            except Exception as exc:  # the loop must outlive any one failure
                log.error("handing held history records to Redis failed: %r", exc)

    async def __del__(self) -> None:
        # Serve awaits this on a graceful shutdown (redeploy, scale-down, `serve delete`): the
        # task offering held records (it runs while any are held) gets a last few seconds.
        flusher = getattr(self, "_flusher", None)  # None also when __init__ did not get that far
        if flusher is not None and not flusher.done():
            await asyncio.wait({flusher}, timeout=self.cfg.unsaved_shutdown_s)
        if getattr(self, "_unsaved", None):
            log.error("%d history records lost: Redis still unavailable at shutdown", len(self._unsaved))
        journal = getattr(self, "journal", None)
        if journal is not None:
            if journal.pending:
                log.warning("%d history records stay in %s for the next start", journal.pending, journal.path)
            journal.close()

    async def check_health(self) -> None:
        """Serve calls this every few seconds: a replica that gets no traffic still hands over
        its held records, and the journals of replicas that were killed, once Redis is back."""
        if self.held or not self._orphans_checked:
            try:
                await self._save_record(None)
            except Exception as exc:  # never fail the health check over history
                log.error("handing held history records to Redis failed: %r", exc)

    def _trim_unsaved(self) -> None:
        while len(self._unsaved) > self.cfg.max_unsaved:
            lost = self._unsaved.popleft()
            log.error(
                "history record %s dropped: Redis down and %d records held",
                lost["query_id"],
                self.cfg.max_unsaved,
            )

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

    def _key(
        self,
        keyword: str,
        limit: int,
        source: str,
        lang: str,
        tasks: list[str],
        threshold: float,
        include_other: bool,
        info: dict[str, Any],
    ) -> str:
        return analysis_key(
            keyword,
            limit,
            source,
            self._versions(info, tasks),
            lang=lang,
            negative_threshold=threshold,
            include_other_languages=include_other,
        )

    @api.post("/analyze", response_model=AnalyzeResponse, responses=ERRORS, dependencies=AUTH)
    async def analyze(self, req: AnalyzeRequest, request: Request) -> AnalyzeResponse:
        """Fetch up to `limit` posts about `keyword`, classify them, return the breakdowns."""
        started = time.perf_counter()
        if self.limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = self.limiter.check(client)
            if wait > 0:
                raise RateLimited(wait)
        source = req.source or self.cfg.default_source
        info = await self._model_info()
        tasks, threshold = self._plan(info, req.tasks, req.negative_threshold)
        log.debug("analyze %r limit=%d source=%s tasks=%s", req.keyword, req.limit, source, ",".join(tasks))
        key = self._key(
            req.keyword, req.limit, source, req.lang, tasks, threshold, req.include_other_languages, info
        )
        cached = await self.cache.get(key)
        if self.held or not self._orphans_checked:
            await self._save_record(None)  # Redis may be back: hand over what was held
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
                lambda: self._infer(
                    req.keyword,
                    req.limit,
                    source,
                    req.lang,
                    req.return_plot,
                    info,
                    key,
                    tasks,
                    threshold,
                    req.include_other_languages,
                ),
                with_plot=req.return_plot,
            )
        if not req.return_plot:
            result["plot_base64"] = None
        source_of_answer = "inference" if computed else "cache"
        return AnalyzeResponse(
            **result, source=source_of_answer, time=round(time.perf_counter() - started, 4)
        )

    async def _infer(
        self,
        keyword: str,
        limit: int,
        source: str,
        lang: str,
        plot: bool,
        info: dict[str, Any],
        key: str,
        tasks: list[str],
        threshold: float,
        include_other: bool,
        priority: Priority = "user",
    ) -> dict[str, Any]:
        """Fetch, pick the posts the models can read, classify per task, aggregate; cache and record."""
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

        answers: dict[str, tuple[str, list[dict[str, Any]]]] = await self._call(
            "classifier",
            lambda: self.classifier.classify_tasks.remote(texts, tasks),
            self.cfg.classify_timeout_s,
        )
        preds = {t: rows for t, (_, rows) in answers.items()}
        versions = {t: version for t, (version, _) in answers.items()}
        if versions != self._versions(info, tasks):
            # A model version was rolled since `info` was read: report (and cache under) the
            # versions that actually produced these predictions, and re-read info next time.
            self._info_at = 0.0
            key = analysis_key(
                keyword,
                limit,
                source,
                versions,
                lang=lang,
                negative_threshold=threshold,
                include_other_languages=include_other,
            )
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
            "partial": fetched.partial is not None,
            "partial_reason": fetched.partial,
            "model_versions": versions,
            "plot_base64": summary["plot_base64"],
            "post_source": source,
            "model_version": versions.get("emotion") or next(iter(versions.values())),
        }
        await self.cache.set(key, result, self.cfg.partial_ttl_s if fetched.partial else None)
        if self.cfg.history and posts:
            rec = make_record(
                keyword,
                source,
                limit,
                lang,
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
            await self._save_record(rec)
        return result

    async def refresh(self, keyword: str, limit: int, source: str, refresh_below_s: int) -> bool:
        """For the cache warmer: re-run an analysis whose cache entry is missing or expiring."""
        info = await self._model_info()
        tasks, threshold = self._plan(info, None, None)
        key = self._key(keyword, limit, source, "en", tasks, threshold, False, info)
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
            lambda: self._infer(
                keyword, limit, source, "en", False, info, key, tasks, threshold, False, "background"
            ),
        )
        return computed

    # Two batches at once, each on one ONNX Runtime thread (`inline_threads`): while one
    # batch's Python (tokenizing, rows, responses) holds the GIL the other keeps a core busy.
    # Measured at 32 users on 2 cores with two ingress replicas: 606-632 RPS against 517-547
    # with one batch at a time (docs/benchmarks.md).
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
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
        return SyncStatus(**state, unsaved_in_ingress=self.held)

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
