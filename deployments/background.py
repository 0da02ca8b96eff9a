"""Background Ray actors: the idle-time history sync, the hot-keyword cache warmer, and the
supervisor of the embedded Redis and PostgreSQL.

All are detached, named actors (they outlive a redeploy of the app and are found again
by name). The sync and the warmer do their work only while the machine's CPU is below a
threshold sampled with psutil, so they never compete with live requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from deployments.actor_loops import (
    DEFAULT_APP,
    NAMESPACE,
    get_actor,
    monitor_actor_name,
    supervisor_actor_name,
    sync_actor_name,
    warmer_actor_name,
)
from deployments.monitor_actor import MonitorActor, MonitorConfig
from deployments.supervisor_actor import SupervisorActor
from deployments.sync_actor import SyncActor, SyncConfig
from deployments.warmer_actor import WarmerActor, WarmerConfig
from serve_app.runtime.embedded import SupervisedServers

if TYPE_CHECKING:  # the drift actor's config, imported where the actor starts
    from serve_app.monitoring.drift_checks import DriftConfig

log = logging.getLogger("emotion_monitor.background")


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
