"""The idle-time sync: a detached actor that moves answered analyses' records from Redis to
PostgreSQL exactly once, while the CPU is idle (serve_app.stores.history does the work).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from deployments.actor_loops import (
    cpu_percent,
)
from serve_app.config.settings import SyncSettings
from serve_app.domain.actor_status import ForcedPass
from serve_app.domain.schemas import SyncStatus
from serve_app.monitoring import metrics

log = logging.getLogger("emotion_monitor.background")


@dataclass(frozen=True)
class SyncConfig:
    # Resolved at run time (settings or the embedded servers); URLs may carry passwords.
    redis_url: str = field(repr=False)
    postgres_url: str = field(repr=False)
    settings: SyncSettings = field(default_factory=SyncSettings)
    sample_s: float = 1.0  # CPU sampling window between batches
    retention_s: int = 86_400  # synced records stay in Redis this long (for recovery)
    backoff_s: float = 5.0  # after a Redis or PostgreSQL failure


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class SyncActor:
    """Moves pending analyses from Redis to PostgreSQL while the CPU is idle."""

    def __init__(self, cfg: SyncConfig) -> None:
        self.cfg = cfg
        self.synced_total = 0
        self.recovered_total = 0
        self.last_sync: float | None = None
        self.last_recovery = 0.0
        self.cpu: float | None = None
        self.paused_reason: str | None = "starting"
        self.pending = 0
        # CPU samples that decided against syncing: proof the loop ran and held back.
        self.cpu_pauses = 0
        self.last_pass: ForcedPass | None = None
        self._engine: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _make_engine(self) -> Any:
        import redis

        from serve_app.stores.history import HistorySync
        from serve_app.stores.history_sql import migrate

        migrate(self.cfg.postgres_url)
        return HistorySync(
            redis.Redis.from_url(self.cfg.redis_url, socket_timeout=5, socket_connect_timeout=5),
            self.cfg.postgres_url,
            self.cfg.settings.batch_size,
            self.cfg.retention_s,
        )

    async def _engine_ready(self) -> Any:
        if self._engine is None:
            self._engine = await asyncio.to_thread(self._make_engine)
        return self._engine

    async def configure(self, cfg: SyncConfig) -> None:
        if cfg != self.cfg:
            async with self._lock:
                if self._engine is not None:
                    self._engine.close()
                self.cfg, self._engine = cfg, None

    async def start(self) -> bool:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
            return True
        return False

    async def _pass(self, force: bool, max_batches: int) -> int:
        """Recovery when due, then batches while (forced or) idle. Returns records synced."""
        engine = await self._engine_ready()
        moved = 0
        if force or time.monotonic() - self.last_recovery > self.cfg.settings.recovery_interval_s:
            self.recovered_total += await asyncio.to_thread(engine.recover)
            self.last_recovery = time.monotonic()
        for _ in range(max_batches):
            report = await asyncio.to_thread(engine.sync_batch)
            moved += report.synced
            self.synced_total += report.synced
            if report.synced:
                self.last_sync = time.time()
            if not report.batches:
                break
            if not force:
                self.cpu = await asyncio.to_thread(cpu_percent, 0.2)
                if self.cpu >= self.cfg.settings.cpu_threshold:
                    self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.settings.cpu_threshold:.0f}%"
                    break
        self.pending = await asyncio.to_thread(engine.pending)
        metrics.record_sync(self.pending, moved)
        return moved

    async def _run(self) -> None:
        while True:
            try:
                self.cpu = await asyncio.to_thread(cpu_percent, self.cfg.sample_s)
                if self.cpu >= self.cfg.settings.cpu_threshold:
                    self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.settings.cpu_threshold:.0f}%"
                    self.cpu_pauses += 1
                    if self._engine is not None:
                        self.pending = await asyncio.to_thread(self._engine.pending)
                    continue
                async with self._lock:
                    self.paused_reason = None
                    await self._pass(force=False, max_batches=1)
            except Exception as exc:  # Redis or PostgreSQL down: keep the backlog, retry later
                self.paused_reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("sync paused: %s", self.paused_reason)
                if self._engine is not None:
                    self._engine.close()
                await asyncio.sleep(self.cfg.backoff_s)

    async def sync_now(self, max_batches: int = 10_000) -> SyncStatus:
        """One full pass regardless of CPU: recovery, then drain the backlog."""
        async with self._lock:
            try:
                moved = await self._pass(force=True, max_batches=max_batches)
                self.last_pass = ForcedPass(at=time.time(), synced=moved)
            except Exception as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.last_pass = ForcedPass(at=time.time(), synced=0, error=error)
                self.paused_reason = error
                if self._engine is not None:
                    self._engine.close()
        return await self.status()

    async def status(self) -> SyncStatus:
        if self._engine is not None:
            try:
                self.pending = await asyncio.to_thread(self._engine.pending)
            except Exception as exc:
                self.paused_reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        return SyncStatus(
            pending=self.pending,
            synced_total=self.synced_total,
            recovered_total=self.recovered_total,
            last_sync=self.last_sync,
            cpu=self.cpu,
            cpu_threshold=self.cfg.settings.cpu_threshold,
            cpu_pauses=self.cpu_pauses,
            paused_reason=self.paused_reason,
            running=self._task is not None and not self._task.done(),
            last_forced_pass=self.last_pass,
        )
