"""The HTTP ingress: FastAPI routes in a Serve deployment, over the objects that do the work.

- `AnalysisFlow` (serve_app.flow.analysis): `/analyze`, and the one call background actors make.
- `ServedCatalog` (serve_app.model.served): which model serves each task.
- `Admission` and `call_with_retries` (serve_app.flow.calls): bounded model work, retried calls.
- `HeldRecords` (serve_app.stores.held_records): history records held while Redis is down.
- `InlineModels` (deployments.inline): short `/predict` calls answered in this process.
- `WatchDesk` (serve_app.api.watch_api): the watchlist, trend and alert routes.
"""
# No `from __future__ import annotations` here: FastAPI must see real types through
# Serve's method wrapping, or request bodies turn into query parameters.

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

import serve_app.api.page_api  # noqa: F401  (registers /, its assets and /docs before Serve wraps the app)
from deployments.inline import InlineModels
from serve_app.api.drift_api import drift  # noqa: F401  (registers GET /drift)
from serve_app.api.export_api import ExportDesk
from serve_app.api.http_api import AUTH, ERRORS, RateLimited, api
from serve_app.api.replay_api import replay_status  # noqa: F401  (registers the /demo/replay routes)
from serve_app.api.rollout_api import models_compare  # noqa: F401  (registers /models/compare)
from serve_app.api.security import RateLimiter, replica_share
from serve_app.api.watch_api import WatchDesk
from serve_app.config.defaults import MAX_BATCH_SIZE
from serve_app.config.settings import HttpSettings, StoresSettings, secret
from serve_app.domain.errors import ServiceUnavailable
from serve_app.domain.records import ServedModels
from serve_app.domain.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    ErrorResponse,
    HealthResponse,
    LabelsResponse,
    PredictRequest,
    PredictResponse,
    SyncStatus,
)
from serve_app.flow.analysis import AnalysisFlow, BackgroundOutcome, BackgroundRun, FlowConfig, Handles
from serve_app.flow.calls import Admission, call_with_retries
from serve_app.flow.compare import CompareRequest, CompareResponse, compare_answers
from serve_app.model.served import ServedCatalog
from serve_app.stores.cache import AnalysisCache
from serve_app.stores.held_records import HeldRecords

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.ingress")


@dataclass(frozen=True)
class IngressConfig:
    flow: FlowConfig = field(default_factory=FlowConfig)
    http: HttpSettings = field(default_factory=HttpSettings)  # API key, /analyze rate limit
    stores: StoresSettings = field(default_factory=StoresSettings)  # cache and per-post score TTLs
    # Resolved at run time (settings or the embedded servers); may carry a password.
    redis_url: str | None = field(default=None, repr=False)
    replicas: int = 1  # ingress replicas sharing the per-client /analyze limit
    cache: bool = True
    model_info_ttl_s: float = 10.0
    max_inflight: int = 128  # requests doing model work at once; more get 503 + Retry-After
    # Records of analyses answered while Redis is down go to an fsynced journal here before
    # the answer leaves (serve_app.stores.journal); None keeps them in memory only (tests, no disk).
    journal_dir: str | None = None
    postgres_url: str | None = field(default=None, repr=False)  # watchlists, trends, alerts
    max_unsaved: int = 10_000  # records held in memory when the journal cannot be written
    unsaved_retry_s: float = 1.0  # how often held records are offered to Redis again
    # Concurrent analyses of one question wait for one computation (a Redis lock across
    # replicas); a waiter gives up and computes itself after this long.
    single_flight_s: float = 90.0
    unsaved_shutdown_s: float = 10.0  # last tries at a graceful shutdown (Serve allows 20 s)
    app_name: str = "emotion-monitor"
    # Short /predict calls classified in the ingress itself (see deployments.inline).
    predict_in_ingress: bool = False
    inline_threads: int = 1  # ONNX Runtime threads per batch (two batches run at once)
    inline_batch_size: int = MAX_BATCH_SIZE
    inline_batch_wait_s: float = 0.0


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
        self.classifier = classifier
        self.cfg = cfg
        api.state.api_key = secret(cfg.http.api_key)  # read by require_api_key, in this replica's process
        self.limiter = (
            RateLimiter(*replica_share(cfg.http.analyze_rate_per_min, cfg.http.analyze_burst, cfg.replicas))
            if cfg.http.analyze_rate_per_min > 0
            else None
        )
        self.catalog = ServedCatalog(self._read_models, cfg.model_info_ttl_s)
        self.admission = Admission(cfg.max_inflight)
        cache = AnalysisCache(cfg.redis_url if cfg.cache else None, cfg.stores.cache_ttl_s)
        store = AnalysisCache(cfg.redis_url if cfg.flow.history else None, cfg.stores.cache_ttl_s)
        self.held_records = HeldRecords(
            store, cfg.journal_dir, cfg.unsaved_retry_s, cfg.unsaved_shutdown_s, cfg.max_unsaved
        )
        self.flow = AnalysisFlow(
            Handles(fetcher, classifier, aggregator),
            self.catalog,
            cache,
            self.held_records,
            self.admission,
            cfg.flow,
            cfg.single_flight_s,
            cfg.stores.score_ttl_s,
        )
        # The watch routes (serve_app.api.watch_api) run in this process and ask it two things.
        # The export route (serve_app.api.export_api) reads held records and PostgreSQL.
        api.state.export = ExportDesk(store.client, cfg.postgres_url)
        api.state.watch = WatchDesk(
            cfg.postgres_url, cfg.flow.sources.default_source, self._served_tasks, self._rate_limit
        )
        self.inline = (
            InlineModels(cfg.inline_threads, cfg.inline_batch_size, cfg.inline_batch_wait_s)
            if cfg.predict_in_ingress
            else None
        )

    async def __del__(self) -> None:
        # Serve awaits this on a graceful shutdown (redeploy, scale-down, `serve delete`).
        held = getattr(self, "held_records", None)  # None when __init__ did not get that far
        if held is not None:
            await held.close()

    async def check_health(self) -> None:
        """Serve calls this every few seconds: a replica that gets no traffic still hands over
        its held records, and the journals of replicas that were killed, once Redis is back."""
        await self.held_records.offer()

    async def _read_models(self) -> ServedModels:
        models: ServedModels = await self.classifier.info.remote()
        return models

    def _rate_limit(self, request: Request) -> None:
        """The per-client limit on requests that start work (analyses, new watches)."""
        if self.limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = self.limiter.check(client)
            if wait > 0:
                raise RateLimited(wait)

    async def _served_tasks(self, tasks: Sequence[str] | None) -> list[str]:
        return self.catalog.plan(await self.catalog.get(), tasks)

    @api.post("/analyze", response_model=AnalyzeResponse, responses=ERRORS, dependencies=AUTH)
    async def analyze(self, req: AnalyzeRequest, request: Request) -> AnalyzeResponse:
        """Fetch up to `limit` posts about `keyword`, classify them, return the breakdowns."""
        started = time.perf_counter()
        self._rate_limit(request)
        models = await self.catalog.get()
        question = self.flow.question(
            models,
            req.keyword,
            req.limit,
            req.source,
            req.tasks,
            req.negative_threshold,
            req.lang,
            req.include_other_languages,
            scope=req.scope(),
            include_comments=req.include_comments,
            count_over=req.count_over,
        )
        log.debug("analyze %r limit=%d source=%s", req.keyword, req.limit, question.source)
        answer, how = await self.flow.answer(question, models, plot=req.return_plot)
        fields = dict(answer)  # the Analysis's fields, already validated
        if not req.return_plot:
            fields["plot_base64"] = None
        return AnalyzeResponse(**fields, source=how, time=round(time.perf_counter() - started, 4))

    @api.post("/compare", response_model=CompareResponse, responses=ERRORS, dependencies=AUTH)
    async def compare(self, req: CompareRequest, request: Request) -> CompareResponse:
        """2-5 keywords, each answered as /analyze would (same options, caches and single
        flight), and per task and label the differences between them with a 95 % interval
        and a Holm-corrected test (`method` says which)."""
        started = time.perf_counter()
        answers = await asyncio.gather(*(self.analyze(sub, request) for sub in req.per_keyword()))
        return compare_answers(req.keywords, answers, round(time.perf_counter() - started, 4))

    async def run_background(self, run: BackgroundRun) -> BackgroundOutcome:
        """The one call background actors (the warmer, the keyword monitor) make."""
        return await self.flow.run_background(run)

    @api.post("/predict", response_model=PredictResponse, responses=ERRORS, dependencies=AUTH)
    async def predict(self, req: PredictRequest, request: Request) -> Response:
        """Classify one text (`text`) or up to 256 (`texts`) with the `task`'s model."""
        started = time.perf_counter()
        models = await self.catalog.get()
        self.catalog.plan(models, [req.task])
        texts = req.all_texts()
        with self.admission.admit():
            done = None
            if self.inline is not None:
                done = await self.inline.classify(req.task, models.tasks[req.task], texts)
            if done is None:
                version, rows = await call_with_retries(
                    "classifier",
                    lambda: self.classifier.classify_versioned.remote(texts, req.task),
                    self.cfg.flow.classify_timeout_s,
                    self.cfg.flow.call_retries,
                )
            else:
                version, rows = done
        self.catalog.note_versions(models.versions([req.task]), {req.task: version})
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
            models: ServedModels = await asyncio.wait_for(self.classifier.info.remote(), timeout=5)
            version = models.default.version
        except Exception as exc:  # any failure means "no model answers": report, never raise
            log.warning("healthz: the Classifier did not answer info() within 5 s: %r", exc)
        redis_state = await self.flow.cache.ping()
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
        from deployments.actor_loops import get_actor, sync_actor_name

        try:
            state = await asyncio.wait_for(
                get_actor(sync_actor_name(self.cfg.app_name)).status.remote(), timeout=10
            )
        except Exception as exc:
            raise ServiceUnavailable(
                f"history sync not running ({type(exc).__name__}); is PostgreSQL configured?", 30
            ) from None
        # model_validate: a detached actor started by an older version still answers a dict.
        status = SyncStatus.model_validate(state)
        return status.model_copy(update={"unsaved_in_ingress": self.held_records.held})

    @api.get("/labels", response_model=LabelsResponse, dependencies=AUTH)
    async def labels(self, request: Request) -> LabelsResponse:
        """The labels the model predicts, in output order."""
        models = await self.catalog.get()
        return LabelsResponse(
            labels=list(models.default.labels),
            model_version=models.default.version,
            tasks={t: list(m.labels) for t, m in models.tasks.items()},
        )
