"""The supervisor of the embedded Redis and PostgreSQL: a detached actor that restarts them
when they die (serve_app.runtime.embedded starts them).
"""

from __future__ import annotations

import asyncio
import logging
import time

import ray

from deployments.actor_loops import (
    LoopActor,
)
from serve_app.domain.actor_status import SupervisorStatus
from serve_app.monitoring import metrics
from serve_app.runtime.embedded import SupervisedServers

log = logging.getLogger("emotion_monitor.background")


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
        from serve_app.runtime.embedded import revive

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
