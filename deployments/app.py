"""The typed app builder behind `serve_config.yaml`'s `import_path`.

`serve run serve_config.yaml` (or `serve.run(build_app(AppArgs()))`) builds the graph:
Ingress -> Fetcher, Classifier (batched, autoscaled), Aggregator. Serve validates the
YAML `args` against `AppArgs`; infrastructure (Redis, Reddit credentials) comes from
`Settings`, read when the app is built, not at import time.
"""

# No `from __future__ import annotations`: Serve reads the builder's annotation to
# validate the YAML `args` into AppArgs; a string annotation would hand it a plain dict.

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray.serve import Application
from ray.serve.deployment import Deployment

from deployments.aggregator import Aggregator
from deployments.background import BackgroundConfigs, start_background
from deployments.classifier import Classifier
from deployments.drift_watch import drift_configs
from deployments.fetcher import Fetcher
from deployments.ingress import Ingress, IngressConfig
from deployments.monitor_actor import MonitorConfig
from deployments.sync_actor import SyncConfig
from deployments.warmer_actor import WarmerConfig
from serve_app.config.defaults import BATCH_WAIT_S, MAX_BATCH_SIZE
from serve_app.config.settings import ModelSettings, Settings, SourcesSettings, get_settings, merged
from serve_app.domain.tasks import TASK_NAMES, TaskName, check_head
from serve_app.flow.analysis import FlowConfig
from serve_app.lifecycle.rollout import CandidateConfig
from serve_app.model.predictor import ModelArtifactError, read_artifact_info
from serve_app.model.registry import check_version, registry_spec
from serve_app.runtime.embedded import Infrastructure, resolve_infrastructure
from serve_app.sources.post_sources import FetcherConfig
from serve_app.stores.drift_store import TapConfig

log = logging.getLogger("emotion_monitor.app")


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # Settings groups (serve_app.config.settings), merged over the environment's: the fields
    # given here win, the rest come from EMOTION_MONITOR_MODEL__* / EMOTION_MONITOR_SOURCES__*.
    model: ModelSettings | None = Field(
        None,
        description="Model settings: `dir` (an INT8 artifact with a head per task; one encoder pass answers "
        "every task it has a head for), `task_dirs` (an artifact per task instead, an encoder pass each), "
        "`ort_threads` (default: the replica's num_cpus), `max_length` (default: the model's)",
    )
    sources: SourcesSettings | None = Field(None, description="Source settings: default_source, jsonl_path")
    tasks: list[TaskName] = Field(
        list(TASK_NAMES),
        min_length=1,
        description="Models to serve; sentiment is skipped (with a warning) if its artifact is absent and it "
        "was not asked for explicitly",
    )
    cache: bool = Field(True, description="Use the Redis cache")
    history: bool = Field(True, description="Record analyses and sync them to PostgreSQL")
    ingress_replicas: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP ingress replicas; more than 1 pays off behind HAProxy (RAY_SERVE_ENABLE_HA_PROXY), "
        "which spreads connections over them, each on its own event loop",
    )
    inline_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="ONNX Runtime threads for each /predict batch run in the ingress (predict_in_ingress)",
    )
    classifier_min_replicas: int = Field(1, ge=1, le=64)
    classifier_max_replicas: int = Field(2, ge=1, le=64)
    classifier_num_cpus: float = Field(1.0, gt=0, le=64)
    max_batch_size: int = Field(MAX_BATCH_SIZE, ge=1, le=512)
    batch_wait_timeout_s: float = Field(BATCH_WAIT_S, ge=0, le=1)
    fetch_deadline_s: float = Field(25.0, gt=0, le=120)
    insights: bool = Field(
        True, description="Drivers and representative posts per label in /analyze answers (bench compares)"
    )
    log_encoding: Literal["TEXT", "JSON"] = Field(
        "JSON", description="JSON: one object per line with the request_id that follows a request"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG logs every hop of every request (Ingress, Fetcher, Classifier, Aggregator)"
    )
    access_log: bool = Field(False, description="Serve's per-request access log lines (costly at high RPS)")
    max_inflight: int = Field(
        128, ge=1, le=100_000, description="requests doing model work at once; beyond: 503 + Retry-After"
    )
    model_versions: dict[TaskName, str] = Field(
        default_factory=dict,
        description="Registry version per task (or 'latest') instead of the artifact dirs; also settable "
        "in the Classifier's user_config, where `serve deploy` changes it without a restart",
    )
    candidate: CandidateConfig = Field(
        default_factory=CandidateConfig,
        description="A registry version shadowing / canarying the live one (docs/rollout.md); usually set in "
        "the Classifier's user_config, where `serve deploy` changes it without a restart",
    )
    classifier_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each Classifier replica needs (node pinning)"
    )
    frontend_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources for the Ingress, Fetcher and Aggregator"
    )
    predict_in_ingress: bool = Field(
        False,
        description="Classify /predict calls of up to 8 texts in the ingress with its own copy of the "
        "Classifier's model (skips a hop: faster on one machine); the Classifier answers the rest, "
        "and all calls where its model is not on the ingress's node",
    )

    @field_validator("model_versions")
    @classmethod
    def versions_well_formed(cls, v: dict[str, str]) -> dict[str, str]:
        for task, version in v.items():
            check_version(task, version)
        return v

    @model_validator(mode="after")
    def replicas_ordered(self) -> "AppArgs":
        if self.classifier_min_replicas > self.classifier_max_replicas:
            raise ValueError("classifier_min_replicas must be <= classifier_max_replicas")
        return self


def derive_serve_config(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Serve config (serve_config.yaml, parsed) with the app's `args` changed.

    Clusters deploy the same app with other args (no /predict in the ingress, more replicas,
    node pinning); deriving them keeps one source of truth, and the result is validated
    against AppArgs here rather than at `serve deploy` time on a remote head. A dotted key
    sets one field of a settings group (`model.ort_threads`), keeping the group's others.
    """
    import copy

    out = copy.deepcopy(config)
    apps = out.get("applications") or []
    if len(apps) != 1:
        raise ValueError(f"expected one application in the Serve config, found {len(apps)}")
    args = dict(apps[0].get("args") or {})
    for key, value in overrides.items():
        group, _, field = key.partition(".")
        args[group] = {**(args.get(group) or {}), field: value} if field else value
    AppArgs.model_validate(args)  # raises with the field and the reason
    apps[0]["args"] = args
    return out


def deployment(obj: object) -> Deployment:
    """`@serve.deployment` turns a class into a Deployment; say so to the type checker."""
    if not isinstance(obj, Deployment):
        raise TypeError(f"{obj!r} is not a Ray Serve deployment")
    return obj


def placed(dep: object, resources: dict[str, float]) -> Deployment:
    """The deployment, needing `resources` (custom Ray resources) on top of its own actor options."""
    d = deployment(dep)
    if not resources:
        return d
    own = dict(d.ray_actor_options or {})
    return d.options(ray_actor_options={**own, "resources": {**own.get("resources", {}), **resources}})


def _abs(path: str | Path) -> str:
    # Replicas may not share the driver's working directory.
    return str(Path(path).expanduser().resolve())


def read_seeds(path: Path, default_limit: int, default_source: str) -> tuple[tuple[str, int, str], ...]:
    """`keyword[,limit[,source]]` per line; # comments and blank lines skipped."""
    if not path.is_file():
        return ()
    seeds = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            parts = [p.strip() for p in line.split(",")]
            limit = int(parts[1]) if len(parts) > 1 and parts[1] else default_limit
            source = parts[2] if len(parts) > 2 and parts[2] else default_source
            seeds.append((parts[0], limit, source))
    return tuple(seeds)


def background_configs(s: Settings, infra: Infrastructure, app_name: str) -> BackgroundConfigs:
    """The background actors' configs: their settings groups as they are, plus run-time values."""
    redis_url, postgres_url = infra.redis_url, infra.postgres_url
    sync = warmer = monitor = None
    if redis_url and postgres_url:
        sync = SyncConfig(redis_url, postgres_url, s.sync)
    if redis_url and s.warmer.per_pass > 0:
        seeds = read_seeds(s.warmer.seeds_file, 250, s.sources.default_source)
        warmer = WarmerConfig(redis_url, app_name, seeds, s.warmer)
    if redis_url and postgres_url and s.monitor.enabled:
        monitor = MonitorConfig(postgres_url, app_name, s.monitor, s.replay)
    return BackgroundConfigs(sync, warmer, infra.supervised(), monitor)


def with_args(args: AppArgs, s: Settings) -> Settings:
    """The settings with the app args' groups merged over the environment's."""
    return s.model_copy(
        update={"model": merged(s.model, args.model), "sources": merged(s.sources, args.sources)}
    )


def model_dirs(args: AppArgs, s: Settings) -> dict[str, str]:
    """Task -> artifact directory for the Classifier; every artifact is checked here, not in a
    replica. Tasks that share a directory share one ONNX session and one encoder pass."""
    m = merged(s.model, args.model)
    shared, own = _abs(m.dir), {t: str(p) for t, p in m.task_dirs.items()}
    wanted = {t: _abs(own[t]) if t in own else shared for t in args.tasks}
    explicit = "tasks" in args.model_fields_set
    out: dict[str, str] = {}
    for task in args.tasks:
        path = Path(wanted[task])
        if not explicit and (path / "model.onnx").is_file() and task not in read_artifact_info(path).heads:
            log.warning("%s has no %s head: serving %s only", path, task, ", ".join(out) or "nothing")
            continue
        info = read_artifact_info(path)  # raises ModelArtifactError with what is missing
        if task not in info.heads:
            raise ModelArtifactError(f"{path} has no {task} head (it has {', '.join(info.heads)})")
        check_head(task, info.heads[task].labels, str(path))
        out[task] = str(path)
    if not out:
        raise ValueError("no model to serve: check model.dir / model.task_dirs and tasks")
    return out


def make_app(
    args: AppArgs, settings: Settings | None = None, app_name: str = "emotion-monitor"
) -> Application:
    s = with_args(args, settings or get_settings())
    infra = resolve_infrastructure(s.stores)
    if s.sources.default_source == "reddit" and not (s.reddit.contact or s.reddit.user_agent):
        log.warning("EMOTION_MONITOR_REDDIT__CONTACT is not set: Reddit asks every client to name a contact")
    logs = {"encoding": args.log_encoding, "log_level": args.log_level, "enable_access_log": args.access_log}
    # The drift watch: the Classifier records scored posts (tap), a background actor checks them.
    drift, tap = drift_configs(s, infra.redis_url, infra.postgres_url, model_dirs(args, s))
    classifier = classifier_deployment(args, s, logs, infra.postgres_url, tap if s.background else None)
    if s.background:
        # Started here, by the app's builder (once per deploy, wherever Serve builds it), not
        # by each ingress replica: detached actors, found again by name on a redeploy.
        try:
            cfgs = replace(background_configs(s, infra, app_name), drift=drift)
            start_background(cfgs, app_name=app_name)
        except Exception as exc:  # the API works without them; /sync/status says so
            log.error("background actors not started: %r", exc)
    # Requests beyond our own admission limit (cache hits, health) still need room, and
    # the queue in front of the ingress must be bounded too, or overload grows memory.
    ongoing = max(256, 2 * args.max_inflight)
    front = args.frontend_resources
    ingress = placed(Ingress, front).options(
        num_replicas=args.ingress_replicas,
        max_ongoing_requests=ongoing,
        max_queued_requests=2 * ongoing,
        logging_config=logs,
    )
    return ingress.bind(
        placed(Fetcher, front).options(logging_config=logs).bind(fetcher_config(args, s, infra)),
        classifier,
        placed(Aggregator, front).options(logging_config=logs).bind(),
        ingress_config(args, s, infra, app_name),
    )


def fetcher_config(args: AppArgs, s: Settings, infra: Infrastructure) -> FetcherConfig:
    # Replicas may not share the driver's working directory: the corpus path made absolute.
    sources = s.sources.model_copy(update={"jsonl_path": Path(_abs(s.sources.jsonl_path))})
    return FetcherConfig(sources, s.reddit, s.replay, s.model, args.fetch_deadline_s, infra.redis_url)


def classifier_deployment(
    args: AppArgs,
    s: Settings,
    logs: dict[str, Any],
    postgres_url: str | None = None,
    drift: TapConfig | None = None,
) -> Application:
    """The Classifier, bound to the checked artifact per task; batching and the served
    versions in its user_config, which `serve deploy` changes without a restart."""
    return (
        deployment(Classifier)
        .options(
            logging_config=logs,
            ray_actor_options={"num_cpus": args.classifier_num_cpus, "resources": args.classifier_resources},
            autoscaling_config={
                "min_replicas": args.classifier_min_replicas,
                "max_replicas": args.classifier_max_replicas,
                "target_ongoing_requests": 16,
            },
            max_ongoing_requests=max(128, args.max_batch_size * 2),
            user_config={
                "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_timeout_s,
                "model_versions": dict(args.model_versions),
                "candidate": args.candidate.model_dump() if args.candidate.active else {},
            },
        )
        .bind(
            model_dirs(args, s),
            s.model.ort_threads or max(1, math.ceil(args.classifier_num_cpus)),
            # The model's own max_length unless the app args name one.
            args.model.max_length if args.model and "max_length" in args.model.model_fields_set else None,
            registry=registry_spec(s),
            cache_dir=_abs(s.stores.data_dir / "models"),
            postgres_url=postgres_url,  # where shadow pairs go (serve_app/stores/shadow_store.py)
            drift=drift,  # where scored posts go for the drift watch (serve_app/stores/drift_store.py)
        )
    )


def ingress_config(args: AppArgs, s: Settings, infra: Infrastructure, app_name: str) -> IngressConfig:
    return IngressConfig(
        flow=FlowConfig(
            sources=s.sources,
            model=s.model,
            history=args.history and infra.postgres_url is not None,
            insights=args.insights,
        ),
        http=s.http,
        stores=s.stores,
        redis_url=infra.redis_url,
        cache=args.cache,
        journal_dir=_abs(s.stores.data_dir / "journal"),
        postgres_url=infra.postgres_url,
        replicas=args.ingress_replicas,
        app_name=app_name,
        max_inflight=args.max_inflight,
        predict_in_ingress=args.predict_in_ingress,
        inline_threads=args.inline_threads,
        inline_batch_size=args.max_batch_size,
    )


def build_app(args: AppArgs) -> Application:
    """The builder `serve_config.yaml` points at: Serve passes the validated `args` only."""
    return make_app(args)
