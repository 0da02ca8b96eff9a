"""The HTTP ingress: FastAPI routes in a Serve deployment that chains the others by handle."""
# No `from __future__ import annotations` here: FastAPI must see real types through
# Serve's method wrapping, or request bodies turn into query parameters.

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app import __version__
from serve_app.cache import AnalysisCache, cache_key
from serve_app.errors import SourceConfigError, SourceError
from serve_app.history import make_record, queue_record, queue_track
from serve_app.preprocess import post_text
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
from serve_app.security import RateLimiter, key_matches

log = logging.getLogger("emotion_monitor.ingress")

api = FastAPI(
    title="emotion-monitor",
    version=__version__,
    description="Emotion breakdown of recent posts about a keyword, and single-text emotion classification.",
)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in {
        401: "Missing or invalid X-API-Key (when the service has a key configured)",
        422: "Invalid input: the message says which field and why",
        429: "Too many /analyze requests from this client; retry after Retry-After seconds",
        502: "The post source failed (named in the message)",
        503: "A part of the service is unavailable or rate limited; retry after Retry-After seconds",
        504: "The post source did not answer in time",
    }.items()
}


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


class Unauthorized(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@api.exception_handler(Unauthorized)
async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "ApiKey"})


@dataclass(frozen=True)
class IngressConfig:
    default_source: str = "reddit"
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    api_key: str | None = field(default=None, repr=False)
    analyze_rate_per_min: float = 0.0
    analyze_burst: int = 20
    cache: bool = True
    history: bool = True  # leave each inference run in Redis for the PostgreSQL sync
    cache_ttl_s: int = 3600
    model_info_ttl_s: float = 10.0
    classify_timeout_s: float = 60.0
    max_unsaved: int = 10_000  # records held in memory while Redis is down
    background: Any = field(default=None, compare=False)  # (SyncConfig, WarmerConfig) or None


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
        self.limiter = (
            RateLimiter(cfg.analyze_rate_per_min, cfg.analyze_burst) if cfg.analyze_rate_per_min > 0 else None
        )
        self.cache = AnalysisCache(cfg.redis_url if cfg.cache else None, cfg.cache_ttl_s)
        self.store = AnalysisCache(cfg.redis_url if cfg.history else None, cfg.cache_ttl_s)
        self._unsaved: collections.deque[dict[str, Any]] = collections.deque()
        self._flush_lock = asyncio.Lock()
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0
        if cfg.background is not None:
            from deployments.background import start_background

            try:
                start_background(*cfg.background)
            except Exception as exc:  # the API works without them; /sync/status says so
                log.error("background actors not started: %r", exc)

    async def _save_record(self, rec: dict[str, Any] | None) -> None:
        """Hand a record to Redis for the sync; hold it in memory while Redis is down."""
        if rec is not None:
            self._unsaved.append(rec)
        if self.store.client is None or not self.store.available:
            self._trim_unsaved()
            return
        # One flusher at a time: concurrent requests must not write or drop each other's records.
        async with self._flush_lock:
            while self._unsaved:
                head = self._unsaved[0]
                try:
                    await queue_record(self.store.client.pipeline(transaction=True), head).execute()
                except (redis.RedisError, OSError) as exc:
                    self.store.mark_failed(exc)
                    break
                self.store.mark_ok()
                if self._unsaved and self._unsaved[0] is head:
                    self._unsaved.popleft()
        self._trim_unsaved()

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

    def _authorize(self, request: Request) -> None:
        """With a key configured, every API route but /healthz needs it in X-API-Key."""
        if self.cfg.api_key:
            given = request.headers.get("x-api-key")
            if given is None:
                raise Unauthorized("missing X-API-Key header")
            if not key_matches(given, self.cfg.api_key):
                raise Unauthorized("invalid API key")

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

    async def _call(self, what: str, response: Any, timeout: float) -> Any:
        try:
            return await asyncio.wait_for(response, timeout=timeout)
        except (SourceError, SourceConfigError):
            raise
        except TimeoutError:
            raise ServiceUnavailable(f"{what} did not answer within {timeout:.0f} s") from None
        except Exception as exc:
            inner = _unwrap(exc)
            if isinstance(inner, SourceError | SourceConfigError):
                raise inner from None
            log.warning("%s failed: %s", what, repr(exc)[:300])
            raise ServiceUnavailable(f"{what} unavailable ({type(inner).__name__}); retry shortly") from None

    @api.post("/analyze", response_model=AnalyzeResponse, responses=ERRORS)
    async def analyze(self, req: AnalyzeRequest, request: Request) -> AnalyzeResponse:
        """Fetch up to `limit` posts about `keyword`, classify them, return the breakdown."""
        started = time.perf_counter()
        self._authorize(request)
        if self.limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = self.limiter.check(client)
            if wait > 0:
                raise RateLimited(wait)
        source = req.source or self.cfg.default_source
        info = await self._model_info()
        key = cache_key(req.keyword, req.limit, source, info["version"], req.lang)
        cached = await self.cache.get(key)
        if self._unsaved:
            await self._save_record(None)  # Redis may be back: hand over what was held
        if cached is not None and (not req.return_plot or cached.get("plot_base64")):
            await self._track(req.keyword, req.limit, source)
            cached.update(source="cache", time=round(time.perf_counter() - started, 4))
            if not req.return_plot:
                cached["plot_base64"] = None
            return AnalyzeResponse(**cached)

        await self._track(req.keyword, req.limit, source)
        result = await self._infer(req.keyword, req.limit, source, req.lang, req.return_plot, info, key)
        return AnalyzeResponse(**result, source="inference", time=round(time.perf_counter() - started, 4))

    async def _infer(
        self, keyword: str, limit: int, source: str, lang: str, plot: bool, info: dict[str, Any], key: str
    ) -> dict[str, Any]:
        """Fetch, classify, aggregate; cache the answer and record it for the history."""
        posts: list[dict[str, Any]] = await self._call(
            f"source {source!r}", self.fetcher.fetch.remote(source, keyword, limit), timeout=60
        )
        texts = [post_text(p["title"], p["body"]) for p in posts]
        preds: list[dict[str, Any]] = await self._call(
            "classifier", self.classifier.classify.remote(texts), self.cfg.classify_timeout_s
        )
        summary: dict[str, Any] = await self._call(
            "aggregator", self.aggregator.summarize.remote(keyword, preds, plot), 30
        )
        result = {
            "keyword": keyword,
            "count": len(posts),
            "agg": summary["agg"],
            "plot_base64": summary["plot_base64"],
            "post_source": source,
            "model_version": info["version"],
        }
        await self.cache.set(key, result)
        if self.cfg.history and posts:
            rec = make_record(keyword, source, limit, lang, info["version"], summary["agg"], posts, preds)
            await self._save_record(rec)
        return result

    async def refresh(self, keyword: str, limit: int, source: str, refresh_below_s: int) -> bool:
        """For the cache warmer: re-run an analysis whose cache entry is missing or expiring."""
        info = await self._model_info()
        key = cache_key(keyword, limit, source, info["version"])
        if self.cache.client is None:
            return False
        try:
            ttl = int(await self.cache.client.ttl(key))
        except (redis.RedisError, OSError):
            return False
        if ttl > refresh_below_s:
            return False
        await self._infer(keyword, limit, source, "en", False, info, key)
        return True

    @api.post("/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(self, req: PredictRequest, request: Request) -> PredictResponse:
        """Classify one text (`text`) or up to 256 (`texts`): label, confidence, all scores."""
        started = time.perf_counter()
        self._authorize(request)
        info = await self._model_info()
        rows = await self._call(
            "classifier", self.classifier.classify.remote(req.all_texts()), self.cfg.classify_timeout_s
        )
        return PredictResponse(
            predictions=rows, model_version=info["version"], time=round(time.perf_counter() - started, 4)
        )

    @api.get("/healthz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def healthz(self) -> JSONResponse:
        """Deep health: the model answers and Redis is reachable (degraded without Redis)."""
        version = None
        try:
            info = await asyncio.wait_for(self.classifier.info.remote(), timeout=5)
            version = info["version"]
        except Exception:
            pass
        redis_state = await self.cache.ping()
        status = "unavailable" if version is None else ("degraded" if redis_state == "down" else "ok")
        body = HealthResponse(
            status=status, model_loaded=version is not None, model_version=version, redis=redis_state
        )
        return JSONResponse(body.model_dump(), status_code=503 if version is None else 200)

    @api.get("/sync/status", response_model=SyncStatus, responses={503: {"model": ErrorResponse}})
    async def sync_status(self, request: Request) -> SyncStatus:
        """The history sync: backlog, records synced, last sync, CPU and why it is paused."""
        self._authorize(request)
        from deployments.background import SYNC_ACTOR, get_actor

        try:
            state = await asyncio.wait_for(get_actor(SYNC_ACTOR).status.remote(), timeout=10)
        except Exception as exc:
            raise ServiceUnavailable(
                f"history sync not running ({type(exc).__name__}); is PostgreSQL configured?", 30
            ) from None
        return SyncStatus(**state, unsaved_in_ingress=len(self._unsaved))

    @api.get("/labels", response_model=LabelsResponse)
    async def labels(self, request: Request) -> LabelsResponse:
        """The labels the model predicts, in output order."""
        self._authorize(request)
        info = await self._model_info()
        return LabelsResponse(labels=info["labels"], model_version=info["version"])
