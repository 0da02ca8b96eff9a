"""The drift watch: a detached background actor that checks, on a schedule and while the CPU
is idle (`GatedLoop`, like the warmer and the monitor), the last N scored posts of every
source against the serving model's reference profile (serve_app/drift.py, docs/drift.md).

Each check is stored in PostgreSQL (`drift_checks`, view `v_drift_daily`) and set on the
Prometheus gauges; a drifted check files an alert in the spike alerts' table, which the
keyword monitor delivers to the same webhook, and, when `retrain_on_drift` is on, submits
the retraining Ray job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from deployments.background import DEFAULT_APP, GatedLoop
from serve_app import metrics
from serve_app.actor_status import DriftStatus
from serve_app.drift import DriftCheck, DriftThresholds, check_window
from serve_app.drift_profile import ReferenceProfile, load_profile

if TYPE_CHECKING:  # imported where used: the actor process needs neither at import
    from serve_app.drift_store import TapConfig
    from serve_app.settings import Settings

log = logging.getLogger("emotion_monitor.drift")

RETRAIN_ENTRYPOINT = "emotion-monitor retrain --config configs/multitask.yaml"


def drift_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-drift"


@dataclass(frozen=True)
class DriftConfig:
    redis_url: str = field(repr=False)
    postgres_url: str = field(repr=False)
    model_dirs: tuple[tuple[str, str], ...] = ()  # (task, artifact dir) of the served models
    versions: tuple[tuple[str, str], ...] = ()  # (task, version) for the records
    window: int = 500  # the last N posts per source checked
    interval_s: float = 300.0
    cpu_threshold: float = 50.0
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    alert_bucket_s: int = 3600  # at most one drift alert per source, task and bucket
    webhook: bool = False  # alerts wait for delivery (`pending`) when a webhook is set
    retrain_on_drift: bool = False
    retrain_entrypoint: str = RETRAIN_ENTRYPOINT
    ray_address: str = "auto"


def submit_retrain(cfg: DriftConfig, client_factory: Callable[[str], Any] | None = None) -> str | None:
    """Submit the retraining Ray job when `retrain_on_drift` is on; its job id, else None.
    The job trains, exports, evaluates and pushes a candidate: it never promotes."""
    if not cfg.retrain_on_drift:
        return None
    if client_factory is None:
        from ray.job_submission import JobSubmissionClient

        client_factory = JobSubmissionClient
    client = client_factory(cfg.ray_address)
    job_id: str = client.submit_job(entrypoint=cfg.retrain_entrypoint)
    log.warning("drift: retraining job %s submitted (%s)", job_id, cfg.retrain_entrypoint)
    return job_id


def run_checks(cfg: DriftConfig, profiles: dict[str, ReferenceProfile | None]) -> list[DriftCheck]:
    """Check every (source, task) window in Redis; each check timed in CPU seconds."""
    import redis

    from serve_app.drift_store import read_window, window_sources

    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=5)
    versions = dict(cfg.versions)
    checks = []
    try:
        for source, task in window_sources(client):
            if task not in dict(cfg.model_dirs):
                continue
            profile = profiles.get(task)
            n_labels = len(profile.heads[task].labels) if profile and task in profile.heads else 0
            started = time.process_time()
            probs, emb = read_window(client, source, task, cfg.window, n_labels or _labels(cfg, task))
            version = versions.get(task, "unknown")
            check = check_window(source, task, version, probs, emb, profile, cfg.thresholds)
            checks.append(_stamped(check, time.process_time() - started))
    finally:
        client.close()
    return checks


def _labels(cfg: DriftConfig, task: str) -> int:
    from serve_app.predictor import read_artifact_info

    return len(read_artifact_info(Path(dict(cfg.model_dirs)[task])).heads[task].labels)


def _stamped(check: DriftCheck, cpu_s: float) -> DriftCheck:
    from dataclasses import replace

    return replace(check, cpu_s=round(cpu_s, 4), checked_at=time.time())


def record_checks(cfg: DriftConfig, checks: list[DriftCheck]) -> list[DriftCheck]:
    """Store every check and file a drift alert for each drifted one; the newly alerted."""
    from serve_app import watchlists as wl
    from serve_app.drift_store import drift_alert, save_check

    alerted = []
    for check in checks:
        save_check(cfg.postgres_url, check)
        metrics.record_drift(check)
        if check.drifted and wl.record_alert(
            cfg.postgres_url, drift_alert(check, cfg.alert_bucket_s), cfg.webhook
        ):
            alerted.append(check)
            metrics.record_alert(check.task, "drift")
            log.warning("drift alert: %s %s %s", check.source, check.task, ",".join(check.reasons))
    return alerted


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class DriftActor(GatedLoop):
    """Runs the drift checks every `interval_s` while the CPU is below its threshold."""

    def __init__(self, cfg: DriftConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.checks_total = 0
        self.alerts_total = 0
        self.retrain_jobs: list[str] = []
        self.last: list[DriftCheck] = []

    async def configure(self, cfg: DriftConfig) -> None:
        self.cfg = cfg

    async def run_once(self, force: bool = False) -> int:
        """One round of checks; the number of drift alerts it filed."""
        from serve_app.history import migrate

        cfg = self.cfg
        await asyncio.to_thread(migrate, cfg.postgres_url)
        profiles = {task: load_profile(Path(d)) for task, d in cfg.model_dirs}
        checks = await asyncio.to_thread(run_checks, cfg, profiles)
        alerted = await asyncio.to_thread(record_checks, cfg, checks)
        if alerted and cfg.retrain_on_drift:
            job = await asyncio.to_thread(submit_retrain, cfg)
            if job:
                self.retrain_jobs.append(job)
        self.checks_total += len(checks)
        self.alerts_total += len(alerted)
        self.last, self.last_pass = checks, time.time()
        return len(alerted)

    async def status(self) -> DriftStatus:
        return DriftStatus(
            checks_total=self.checks_total,
            alerts_total=self.alerts_total,
            retrain_jobs=list(self.retrain_jobs),
            last_pass=self.last_pass,
            cpu=self.cpu,
            paused_reason=self.paused_reason,
            interval_s=self.cfg.interval_s,
        )


def drift_configs(
    s: Settings, redis_url: str | None, postgres_url: str | None, model_dirs: dict[str, str], webhook: bool
) -> tuple[DriftConfig | None, TapConfig | None]:
    """The drift watch's actor config and the Classifier's tap config from the settings
    (serve_app.settings.Settings); (None, None) when it is off or Redis/PostgreSQL are missing."""
    from serve_app.drift_store import TapConfig
    from serve_app.predictor import read_artifact_info

    if not (s.drift and redis_url and postgres_url):
        return None, None
    cfg = DriftConfig(
        redis_url=redis_url,
        postgres_url=postgres_url,
        model_dirs=tuple(model_dirs.items()),
        versions=tuple((t, read_artifact_info(Path(d)).version) for t, d in model_dirs.items()),
        window=s.drift_window,
        interval_s=s.drift_interval_s,
        cpu_threshold=s.drift_cpu_threshold,
        thresholds=DriftThresholds(alpha=s.drift_alpha, min_posts=s.drift_min_posts),
        alert_bucket_s=s.alert_bucket_s,
        webhook=webhook,
        retrain_on_drift=s.retrain_on_drift,
    )
    return cfg, TapConfig(redis_url=redis_url, window=s.drift_window)
