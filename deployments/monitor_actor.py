"""The keyword monitor: a detached actor that polls due watches, records their trends, files
spike alerts (with emerging terms) and offers pending alerts to the webhook.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace

import ray

from deployments.actor_loops import (
    GatedLoop,
    get_actor,
    sync_actor_name,
)
from serve_app.config.settings import MonitorSettings, ReplaySettings, secret
from serve_app.domain.actor_status import MonitorStatus
from serve_app.flow.analysis import BackgroundRun
from serve_app.model.preprocess import normalize_keyword
from serve_app.monitoring import metrics
from serve_app.monitoring.trends import SpikeRule, spike_rules

log = logging.getLogger("emotion_monitor.background")


@dataclass(frozen=True)
class MonitorConfig:
    postgres_url: str = field(repr=False)  # resolved at run time
    app_name: str = "emotion-monitor"
    settings: MonitorSettings = field(default_factory=MonitorSettings)
    # A replayed feed (source "replay") runs minutes of posts where a live one runs hours:
    # its watches' spike test compares buckets of `replay.bucket_s` instead.
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    window_s: int = 7 * 86_400  # history read for the baseline
    webhook_timeout_s: float = 5.0

    @property
    def rules(self) -> tuple[SpikeRule, ...]:
        return spike_rules(self.settings)

    @property
    def webhook_url(self) -> str | None:
        return secret(self.settings.alert_webhook_url)

    def bucket_for(self, source: str) -> int:
        return self.replay.bucket_s if source == "replay" else self.settings.alert_bucket_s


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class MonitorActor(GatedLoop):
    """Polls each watched keyword at its interval through the ingress (posts scored before
    are not scored again), gets the results into PostgreSQL through the history path, and
    raises spike alerts (recorded once, delivered to the webhook with retries)."""

    def __init__(self, cfg: MonitorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.polls_total = 0
        self.alerts_total = 0
        self.delivered_total = 0

    async def run_once(self, force: bool = False) -> int:
        """Poll the due watches (all of them if `force`); the number polled."""
        from ray import serve

        from serve_app.stores import watchlists as wl

        dsn = self.cfg.postgres_url
        now = time.time()
        watches = await asyncio.to_thread(wl.list_watches, dsn)
        ingress = serve.get_deployment_handle("Ingress", app_name=self.cfg.app_name)
        polled = []
        for w in watches:
            if not (force or w.due(now)):
                continue
            if not force and await self.busy():
                break
            error = None
            try:
                await ingress.run_background.remote(
                    BackgroundRun(w.keyword, w.limit, w.source, tuple(w.tasks), scope=w.scope)
                )
            except Exception as exc:  # recorded on the watch; the next poll tries again
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
            await asyncio.to_thread(wl.mark_run, dsn, w.keyword, error)
            if error is None:
                polled.append(w)
        self.polls_total += len(polled)
        if polled:
            # The polls' records are in Redis: move them to PostgreSQL now, so the spike test
            # sees them (sync_now ignores the CPU gate; it is a bounded pass).
            await get_actor(sync_actor_name(self.cfg.app_name)).sync_now.remote()
            for w in polled:
                await self._spikes(w.keyword, self.cfg.bucket_for(w.source))
        await self.deliver_pending()
        self.last_pass = time.time()
        return len(polled)

    async def _spikes(self, keyword: str, bucket_s: int) -> None:
        from serve_app.monitoring.trends import detect_spikes
        from serve_app.stores import watchlists as wl

        since = time.time() - self.cfg.window_s
        # Baselines restart at a model change: only buckets scored by the current version.
        buckets = await asyncio.to_thread(
            wl.trend_buckets, self.cfg.postgres_url, keyword, bucket_s, since, True
        )
        for found in detect_spikes(normalize_keyword(keyword), buckets, self.cfg.rules, bucket_s):
            # What the spike is about: the terms that rose in its bucket (posts' texts in PostgreSQL).
            trailing = max(r.baseline_buckets for r in self.cfg.rules if r.task == found.task)
            terms = await asyncio.to_thread(wl.spike_terms, self.cfg.postgres_url, found, trailing)
            spike = replace(found, emerging_terms=terms)
            if await asyncio.to_thread(
                wl.record_alert, self.cfg.postgres_url, spike, bool(self.cfg.webhook_url)
            ):
                self.alerts_total += 1
                metrics.record_alert(spike.task, spike.label)
                log.warning("alert: %s %s %s%% (baseline %s%%, z %.1f) for %r", spike.task, spike.label,
                            spike.share, spike.baseline, spike.z, keyword)  # fmt: skip

    async def deliver_pending(self) -> int:
        """Offer every pending alert to the webhook (a down webhook keeps them pending)."""
        import httpx

        from serve_app.monitoring.alerts import deliver
        from serve_app.stores import watchlists as wl

        if not self.cfg.webhook_url:
            return 0
        pending = await asyncio.to_thread(wl.pending_alerts, self.cfg.postgres_url)
        delivered = 0
        async with httpx.AsyncClient(timeout=self.cfg.webhook_timeout_s) as client:
            for alert in pending:
                ok, error = await deliver(client, self.cfg.webhook_url, alert)
                await asyncio.to_thread(
                    wl.mark_delivery,
                    self.cfg.postgres_url,
                    alert.alert_id,
                    ok,
                    error,
                    self.cfg.settings.alert_webhook_attempts,
                )
                metrics.record_alert_delivery("delivered" if ok else "failed_attempt")
                delivered += int(ok)
        self.delivered_total += delivered
        return delivered

    async def status(self) -> MonitorStatus:
        return MonitorStatus(
            polls_total=self.polls_total,
            alerts_total=self.alerts_total,
            delivered_total=self.delivered_total,
            last_pass=self.last_pass,
            cpu=self.cpu,
            paused_reason=self.paused_reason,
        )
