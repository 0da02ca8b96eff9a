"""What every detached background actor shares: its name in the app's namespace, and the
loop that runs a pass on a schedule (GatedLoop: only while the CPU is idle).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psutil
import ray

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


def cpu_percent(window_s: float) -> float:
    return float(psutil.cpu_percent(interval=window_s))


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
    (the warmer, the keyword monitor, the drift watch): every `cfg.settings.interval_s`, if the
    machine's CPU is below `cfg.settings.cpu_threshold` (the actor's settings group), one
    `run_once()`; `busy()` lets a pass stop between items."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: float | None = None
        self.paused_reason: str | None = "starting"
        self.last_pass: float | None = None

    async def busy(self, window_s: float = 0.5) -> bool:
        if self.cfg.settings.cpu_threshold >= 100:  # the gate is off: a full machine still polls
            return False
        self.cpu = await asyncio.to_thread(cpu_percent, window_s)
        if self.cpu >= self.cfg.settings.cpu_threshold:
            self.paused_reason = f"cpu {self.cpu:.0f}% >= {self.cfg.settings.cpu_threshold:.0f}%"
            return True
        return False

    async def run_once(self, force: bool = False) -> int:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.settings.interval_s)
            try:
                if await self.busy(1.0):
                    continue
                self.paused_reason = None
                await self.run_once()
            except Exception as exc:
                self.paused_reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("%s paused: %s", type(self).__name__, self.paused_reason)


def monitor_actor_name(app_name: str = DEFAULT_APP) -> str:
    return f"{app_name}-monitor"


def get_actor(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)
