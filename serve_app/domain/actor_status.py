"""What the detached background actors report from `status()`: declared records, so a
reader (the Ingress, the CLI, the tests) sees every field the actor sets and nothing is
dropped on the way. The sync actor's record is `serve_app.domain.schemas.SyncStatus` (it is also
the /sync/status response)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ForcedPass(BaseModel):
    """Outcome of the last `sync --now` (same JSON as the dict it replaces)."""

    at: float = Field(description="Unix time the pass ended.")
    synced: int = Field(description="Records moved to PostgreSQL by the pass.")
    error: str | None = Field(None, description="Why the pass failed, if it did.")


class WarmerStatus(BaseModel):
    refreshed_total: int
    last_pass: float | None
    cpu: float | None
    cpu_threshold: float
    paused_reason: str | None
    config: dict[str, object] = Field(description="The warmer's config, redis_url masked.")


class MonitorStatus(BaseModel):
    polls_total: int
    alerts_total: int
    delivered_total: int
    last_pass: float | None
    cpu: float | None
    paused_reason: str | None


class SupervisorStatus(BaseModel):
    restarts: dict[str, int] = Field(description="Restarts per embedded server (redis, postgres).")
    last_check: float | None
    last_error: str | None


class DriftStatus(BaseModel):
    checks_total: int
    alerts_total: int
    retrain_jobs: list[str]
    last_pass: float | None
    cpu: float | None
    paused_reason: str | None
    interval_s: float
