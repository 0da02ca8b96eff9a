"""One pass of the drift watch: every source's window checked against the served models'
reference profiles, stored, alerted, and the retraining job submitted when asked
(docs/drift.md). The DriftActor (deployments/drift_watch.py) runs it on a schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.config.settings import DriftSettings, MonitorSettings, secret
from serve_app.model.drift_profile import ReferenceProfile
from serve_app.monitoring import metrics
from serve_app.monitoring.drift import DriftCheck, DriftThresholds, check_window

log = logging.getLogger("emotion_monitor.drift")


RETRAIN_ENTRYPOINT = "emotion-monitor retrain --config configs/multitask.yaml"


@dataclass(frozen=True)
class DriftConfig:
    redis_url: str = field(repr=False)
    postgres_url: str = field(repr=False)
    model_dirs: tuple[tuple[str, str], ...] = ()  # (task, artifact dir) of the served models
    versions: tuple[tuple[str, str], ...] = ()  # (task, version) for the records
    settings: DriftSettings = field(default_factory=DriftSettings)
    # At most one drift alert per source, task and alert bucket; alerts wait for delivery
    # (`pending`) when the monitor has a webhook.
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    retrain_entrypoint: str = RETRAIN_ENTRYPOINT
    ray_address: str = "auto"


def thresholds(s: DriftSettings) -> DriftThresholds:
    """The statistical thresholds of a check: the settings' alpha and minimum posts."""
    return DriftThresholds(alpha=s.alpha, min_posts=s.min_posts)


def submit_retrain(cfg: DriftConfig, client_factory: Callable[[str], Any] | None = None) -> str | None:
    """Submit the retraining Ray job when `retrain_on_drift` is on; its job id, else None.
    The job trains, exports, evaluates and pushes a candidate: it never promotes."""
    if not cfg.settings.retrain_on_drift:
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

    from serve_app.stores.drift_store import read_window, window_sources

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
            probs, emb = read_window(
                client, source, task, cfg.settings.window, n_labels or _labels(cfg, task)
            )
            version = versions.get(task, "unknown")
            check = check_window(source, task, version, probs, emb, profile, thresholds(cfg.settings))
            checks.append(_stamped(check, time.process_time() - started))
    finally:
        client.close()
    return checks


def _labels(cfg: DriftConfig, task: str) -> int:
    from serve_app.model.predictor import read_artifact_info

    return len(read_artifact_info(Path(dict(cfg.model_dirs)[task])).heads[task].labels)


def _stamped(check: DriftCheck, cpu_s: float) -> DriftCheck:
    from dataclasses import replace

    return replace(check, cpu_s=round(cpu_s, 4), checked_at=time.time())


def record_checks(cfg: DriftConfig, checks: list[DriftCheck]) -> list[DriftCheck]:
    """Store every check and file a drift alert for each drifted one; the newly alerted."""
    from serve_app.stores import watchlists as wl
    from serve_app.stores.drift_store import drift_alert, save_check

    alerted = []
    for check in checks:
        save_check(cfg.postgres_url, check)
        metrics.record_drift(check)
        if check.drifted and wl.record_alert(
            cfg.postgres_url,
            drift_alert(check, cfg.monitor.alert_bucket_s),
            secret(cfg.monitor.alert_webhook_url) is not None,
        ):
            alerted.append(check)
            metrics.record_alert(check.task, "drift")
            log.warning("drift alert: %s %s %s", check.source, check.task, ",".join(check.reasons))
    return alerted
