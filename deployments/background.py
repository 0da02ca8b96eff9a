"""Background Ray actors: the idle-time history sync, the hot-keyword cache warmer, and the
supervisor of the embedded Redis and PostgreSQL.

All are detached, named actors (they outlive a redeploy of the app and are found again
by name). The sync and the warmer do their work only while the machine's CPU is below a
threshold sampled with psutil, so they never compete with live requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psutil
import ray

from serve_app import metrics
from serve_app.actor_status import ForcedPass, MonitorStatus, SupervisorStatus, WarmerStatus
from serve_app.analysis import BackgroundOutcome, BackgroundRun
from serve_app.embedded import SupervisedServers
from serve_app.preprocess import normalize_keyword
from serve_app.schemas import SyncStatus
from serve_app.trends import SpikeRule, spike_rules

if TYPE_CHECKING:  # deployments.drift_watch builds on GatedLoop below
    from deployments.drift_watch import DriftConfig

log = logging.getLogger("emotion_monitor.background")

NAMESPACE = "emotion-monitor"
DEFAULT_APP = "emotion-monitor"


def sync_actor_name(app_name: str = DEFAULT_APP) -> str:
    """Each Serve application has its own actors, so two apps on one cluster never share a backlog."""
    return f"{app_name}-sync"


def warmer_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-warmer"


def supervisor_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-supervisor"


SYNC_ACTOR = sync_actor_name()


@dataclass(frozen=True)
class SyncConfig:
    redis_url: str = field(repr=False)  # URLs may carry passwords
    postgres_url: str = field(repr=False)
    cpu_threshold: float = 20.0  # percent, whole machine
    batch_size: int = 20  # records (analyses) per PostgreSQL transaction
    interval_s: float = 1.0  # CPU sampling window between batches
    recovery_interval_s: float = 60.0
    retention_s: int = 86_400  # synced records stay in Redis this long (for recovery)
    backoff_s: float = 5.0  # after a Redis or PostgreSQL failure


def cpu_percent(window_s: float) -> float:
    return float(psutil.cpu_percent(interval=window_s))


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

        from serve_app.history import HistorySync, migrate

        migrate(self.cfg.postgres_url)
        return HistorySync(
            redis.Redis.from_url(self.cfg.redis_url, socket_timeout=5, socket_connect_timeout=5),
            self.cfg.postgres_url,
            self.cfg.batch_size,
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
        if force or time.monotonic() - self.last_recovery > self.cfg.recovery_interval_s:
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
                if self.cpu >= self.cfg.cpu_threshold:
                    self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.cpu_threshold:.0f}%"
                    break
        self.pending = await asyncio.to_thread(engine.pending)
        metrics.record_sync(self.pending, moved)
        return moved

    async def _run(self) -> None:
        while True:
            try:
                self.cpu = await asyncio.to_thread(cpu_percent, self.cfg.interval_s)
                if self.cpu >= self.cfg.cpu_threshold:
                    self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.cpu_threshold:.0f}%"
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
            cpu_threshold=self.cfg.cpu_threshold,
            cpu_pauses=self.cpu_pauses,
            paused_reason=self.paused_reason,
            running=self._task is not None and not self._task.done(),
            last_forced_pass=self.last_pass,
        )


@dataclass(frozen=True)
class WarmerConfig:
    redis_url: str = field(repr=False)
    app_name: str = "emotion-monitor"
    seeds: tuple[tuple[str, int, str], ...] = ()  # (keyword, limit, source)
    cpu_threshold: float = 35.0
    interval_s: float = 30.0
    per_pass: int = 5  # at most this many refreshes per pass
    refresh_below_s: int = 300  # refresh entries with less TTL than this (or none)
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


class LoopActor:
    """A background actor's life: `configure` pushes a new config, `start` runs `_run` once
    (a second call while it runs does nothing)."""

    cfg: Any

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def configure(self, cfg: Any) -> None:
        self.cfg = cfg

    async def start(self) -> bool:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
            return True
        return False

    async def _run(self) -> None:
        raise NotImplementedError


class GatedLoop(LoopActor):
    """Scheduling and CPU gating shared by the background workers that call the service
    (the warmer, the keyword monitor): every `cfg.interval_s`, if the machine's CPU is below
    `cfg.cpu_threshold`, one `run_once()`; `busy()` lets a pass stop between items."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: float | None = None
        self.paused_reason: str | None = "starting"
        self.last_pass: float | None = None

    async def busy(self, window_s: float = 0.5) -> bool:
        if self.cfg.cpu_threshold >= 100:  # the gate is off: a full machine still polls
            return False
        self.cpu = await asyncio.to_thread(cpu_percent, window_s)
        if self.cpu >= self.cfg.cpu_threshold:
            self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.cpu_threshold:.0f}%"
            return True
        return False

    async def run_once(self, force: bool = False) -> int:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval_s)
            try:
                if await self.busy(1.0):
                    continue
                self.paused_reason = None
                await self.run_once()
            except Exception as exc:
                self.paused_reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("%s paused: %s", type(self).__name__, self.paused_reason)


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

        from serve_app.history import hot_keywords

        r = redis.Redis.from_url(self.cfg.redis_url, socket_timeout=5)
        try:
            hot = await asyncio.to_thread(hot_keywords, r, self.cfg.hot_hours, self.cfg.hot_top)
        finally:
            r.close()
        from ray import serve

        ingress = serve.get_deployment_handle("Ingress", app_name=self.cfg.app_name)
        refreshed = 0
        for kw, limit, source in warm_candidates(hot, self.cfg.seeds):
            if refreshed >= self.cfg.per_pass:
                break
            if not force and await self.busy():
                break
            run = BackgroundRun(kw, limit, source, refresh_below_s=self.cfg.refresh_below_s)
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
            cpu_threshold=self.cfg.cpu_threshold,
            paused_reason=self.paused_reason,
            config=asdict(self.cfg) | {"redis_url": "***"},
        )


@dataclass(frozen=True)
class MonitorConfig:
    postgres_url: str = field(repr=False)
    app_name: str = "emotion-monitor"
    cpu_threshold: float = 50.0
    interval_s: float = 15.0  # how often due watches are looked for
    bucket_s: int = 3600  # trend bucket the spike test compares
    window_s: int = 7 * 86_400  # history read for the baseline
    rules: tuple[SpikeRule, ...] = field(default_factory=spike_rules)
    webhook_url: str | None = field(default=None, repr=False)
    webhook_attempts: int = 8  # delivery attempts (each with in-pass retries) before `failed`
    webhook_timeout_s: float = 5.0
    # A replayed feed (source "replay") runs minutes of posts where a live one runs hours:
    # its watches' spike test compares buckets of this size instead of `bucket_s`.
    replay_bucket_s: int = 60

    def bucket_for(self, source: str) -> int:
        return self.replay_bucket_s if source == "replay" else self.bucket_s


def monitor_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-monitor"


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

        from serve_app import watchlists as wl

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
        from serve_app import watchlists as wl
        from serve_app.trends import detect_spikes

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

        from serve_app import watchlists as wl
        from serve_app.alerts import deliver

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
                    self.cfg.webhook_attempts,
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


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class SupervisorActor(LoopActor):
    """Restarts the embedded Redis and PostgreSQL when they die (same data, same socket).

    Only servers the app started itself are watched (`SupervisedServers`); configured
    URLs belong to someone else. The servers are daemons, not this actor's children: it
    can be on any process of the node, and a restart of the actor does not stop them.
    """

    def __init__(self, cfg: SupervisedServers) -> None:
        super().__init__()
        self.cfg = cfg
        self.restarts: dict[str, int] = {}
        self.last_error: str | None = None
        self.last_check: float | None = None

    async def check_now(self) -> list[str]:
        from serve_app.embedded import revive

        started = time.monotonic()
        try:
            restarted = await asyncio.to_thread(revive, self.cfg)
            self.last_error = None
        except Exception as exc:  # keep watching: the next check tries again
            self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.error("embedded server restart failed: %s", self.last_error)
            return []
        finally:
            self.last_check = time.time()
        for server in restarted:
            self.restarts[server] = self.restarts.get(server, 0) + 1
            log.warning(
                "embedded %s was down: restarted in %.1f s (restart %d)",
                server,
                time.monotonic() - started,
                self.restarts[server],
            )
            metrics.record_embedded_restart(server)
        return restarted

    async def _run(self) -> None:
        while True:
            await self.check_now()
            await asyncio.sleep(self.cfg.interval_s)

    async def status(self) -> SupervisorStatus:
        return SupervisorStatus(
            restarts=dict(self.restarts), last_check=self.last_check, last_error=self.last_error
        )


@dataclass(frozen=True)
class BackgroundConfigs:
    """The app's background actors' configs; None leaves that actor out."""

    sync: SyncConfig | None = None
    warmer: WarmerConfig | None = None
    supervised: SupervisedServers | None = None
    monitor: MonitorConfig | None = None
    drift: DriftConfig | None = None  # the drift watch (deployments/drift_watch.py)


def start_background(cfgs: BackgroundConfigs, app_name: str = DEFAULT_APP) -> dict[str, Any]:
    """Get or create the app's detached actors, push the current config, start their loops."""
    from deployments.drift_watch import DriftActor, drift_actor_name

    handles: dict[str, Any] = {}
    entries: tuple[tuple[str, Any, Any], ...] = (
        (supervisor_actor_name(app_name), SupervisorActor, cfgs.supervised),
        (sync_actor_name(app_name), SyncActor, cfgs.sync),
        (warmer_actor_name(app_name), WarmerActor, cfgs.warmer),
        (monitor_actor_name(app_name), MonitorActor, cfgs.monitor),
        (drift_actor_name(app_name), DriftActor, cfgs.drift),
    )
    for name, cls, cfg in entries:
        if cfg is None:
            continue
        remote_cls: Any = cls  # @ray.remote adds .options at run time
        actor = remote_cls.options(
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(cfg)
        ray.get(actor.configure.remote(cfg))
        ray.get(actor.start.remote())
        handles[name] = actor
    return handles


def get_actor(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)


def stop_background(app_name: str = DEFAULT_APP) -> list[str]:
    """Kill the app's detached actors (they outlive `serve delete`); returns the names killed."""
    killed = []
    from deployments.drift_watch import drift_actor_name

    names = (sync_actor_name, warmer_actor_name, supervisor_actor_name, monitor_actor_name, drift_actor_name)
    handles = []
    for name in (n(app_name) for n in names):
        try:
            handle = get_actor(name)
        except ValueError:
            continue
        ray.kill(handle)
        handles.append(handle)
        killed.append(name)
    # ray.kill returns before the actor is gone: a supervisor still alive could restart the
    # embedded servers its caller is about to stop.
    for handle in handles:
        _wait_dead(handle)
    return killed


def _wait_dead(handle: Any, timeout_s: float = 10.0) -> None:
    """Until a killed actor's calls fail (it is gone) or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=1)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return
        time.sleep(0.1)
