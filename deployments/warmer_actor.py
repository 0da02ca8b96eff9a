"""The hot-keyword warmer: a detached actor that refreshes the cached answers of the most
asked keywords (and the seeds file's) before they expire, while the CPU is idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import ray

from deployments.actor_loops import (
    GatedLoop,
)
from serve_app.config.settings import WarmerSettings
from serve_app.domain.actor_status import WarmerStatus
from serve_app.flow.analysis import BackgroundOutcome, BackgroundRun
from serve_app.model.preprocess import normalize_keyword
from serve_app.monitoring import metrics


@dataclass(frozen=True)
class WarmerConfig:
    redis_url: str = field(repr=False)  # resolved at run time
    app_name: str = "emotion-monitor"
    seeds: tuple[tuple[str, int, str], ...] = ()  # (keyword, limit, source), read from settings.seeds_file
    settings: WarmerSettings = field(default_factory=WarmerSettings)
    hot_hours: int = 24
    hot_top: int = 20


def warm_candidates(
    hot: Sequence[tuple[str, int, str, float]], seeds: Sequence[tuple[str, int, str]]
) -> list[tuple[str, int, str]]:
    """Hot keywords first (most queried first), then seeds, without repeats."""
    out: list[tuple[str, int, str]] = []
    seen: set[tuple[str, int, str]] = set()
    for entry in [*hot, *seeds]:
        kw, limit, source = str(entry[0]), int(entry[1]), str(entry[2])
        item = (normalize_keyword(kw), limit, source)
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class WarmerActor(GatedLoop):
    """Keeps hot keywords' cache entries fresh while the CPU is idle."""

    def __init__(self, cfg: WarmerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.refreshed_total = 0

    async def run_once(self, force: bool = False) -> int:
        return await self.warm_once(force)

    async def warm_once(self, force: bool = False) -> int:
        """One bounded pass; stops the moment CPU rises above the threshold."""
        import redis

        from serve_app.stores.history import hot_keywords

        r = redis.Redis.from_url(self.cfg.redis_url, socket_timeout=5)
        try:
            hot = await asyncio.to_thread(hot_keywords, r, self.cfg.hot_hours, self.cfg.hot_top)
        finally:
            r.close()
        from ray import serve

        ingress = serve.get_deployment_handle("Ingress", app_name=self.cfg.app_name)
        refreshed = 0
        for kw, limit, source in warm_candidates(hot, self.cfg.seeds):
            if refreshed >= self.cfg.settings.per_pass:
                break
            if not force and await self.busy():
                break
            run = BackgroundRun(kw, limit, source, refresh_below_s=self.cfg.settings.refresh_below_s)
            outcome: BackgroundOutcome = await ingress.run_background.remote(run)
            refreshed += int(outcome.computed)
        self.refreshed_total += refreshed
        metrics.record_warmer(refreshed)
        self.last_pass = time.time()
        return refreshed

    async def status(self) -> WarmerStatus:
        return WarmerStatus(
            refreshed_total=self.refreshed_total,
            last_pass=self.last_pass,
            cpu=self.cpu,
            cpu_threshold=self.cfg.settings.cpu_threshold,
            paused_reason=self.paused_reason,
            config=asdict(self.cfg)
            | {"redis_url": "***", "settings": self.cfg.settings.model_dump(mode="json")},
        )
