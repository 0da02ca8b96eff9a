"""The drift watch: a detached background actor that checks, on a schedule and while the CPU
is idle (`GatedLoop`, like the warmer and the monitor), the last N scored posts of every
source against the serving model's reference profile (serve_app/monitoring/drift.py, docs/drift.md).

Each check is stored in PostgreSQL (`drift_checks`, view `v_drift_daily`) and set on the
Prometheus gauges; a drifted check files an alert in the spike alerts' table, which the
keyword monitor delivers to the same webhook, and, when `retrain_on_drift` is on, submits
the retraining Ray job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from deployments.actor_loops import DEFAULT_APP, GatedLoop
from serve_app.domain.actor_status import DriftStatus
from serve_app.model.drift_profile import load_profile
from serve_app.monitoring.drift import DriftCheck
from serve_app.monitoring.drift_checks import (
    DriftConfig,
    record_checks,
    run_checks,
    submit_retrain,
)

if TYPE_CHECKING:  # imported where used: the actor process needs neither at import
    from serve_app.config.settings import Settings
    from serve_app.stores.drift_store import TapConfig

log = logging.getLogger("emotion_monitor.drift")


def drift_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-drift"


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
        from serve_app.stores.history_sql import migrate

        cfg = self.cfg
        await asyncio.to_thread(migrate, cfg.postgres_url)
        profiles = {task: load_profile(Path(d)) for task, d in cfg.model_dirs}
        checks = await asyncio.to_thread(run_checks, cfg, profiles)
        alerted = await asyncio.to_thread(record_checks, cfg, checks)
        if alerted and cfg.settings.retrain_on_drift:
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
            interval_s=self.cfg.settings.interval_s,
        )


def drift_configs(
    s: Settings, redis_url: str | None, postgres_url: str | None, model_dirs: dict[str, str]
) -> tuple[DriftConfig | None, TapConfig | None]:
    """The drift watch's actor config and the Classifier's tap config: the settings' drift and
    monitor groups as they are, plus the run-time URLs and served models; (None, None) when
    it is off or Redis/PostgreSQL are missing."""
    from serve_app.model.predictor import read_artifact_info
    from serve_app.stores.drift_store import TapConfig

    if not (s.drift.enabled and redis_url and postgres_url):
        return None, None
    cfg = DriftConfig(
        redis_url=redis_url,
        postgres_url=postgres_url,
        model_dirs=tuple(model_dirs.items()),
        versions=tuple((t, read_artifact_info(Path(d)).version) for t, d in model_dirs.items()),
        settings=s.drift,
        monitor=s.monitor,
    )
    return cfg, TapConfig(redis_url=redis_url, drift=s.drift)
