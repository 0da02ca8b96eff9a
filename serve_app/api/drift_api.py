"""`GET /drift`: the drift watch's latest check of every source and task (deployments/drift_watch.py,
docs/drift.md). Registered on the ingress's app by importing this module."""
# No `from __future__ import annotations`: FastAPI must see real types.

import datetime as dt

from fastapi import Query, Request
from pydantic import BaseModel, Field

from serve_app.api.http_api import AUTH, ERRORS, api
from serve_app.api.watch_api import _desk
from serve_app.monitoring.drift import DriftCheck
from serve_app.stores.drift_store import latest_checks


class DriftTestOut(BaseModel):
    name: str = Field(description="label_mix (chi-square, TVD), confidence (KS), embedding (MMD)")
    statistic: float = Field(description="effect size: TVD, KS D or MMD^2")
    p_value: float
    significant: bool = Field(description="below the Bonferroni-corrected alpha and above the effect floor")


class DriftCheckOut(BaseModel):
    source: str
    task: str
    model_version: str
    checked_at: dt.datetime
    posts: int = Field(description="posts in the window checked")
    reference: str = Field(description='what the reference profile was made from, or "no reference"')
    drifted: bool
    reasons: list[str]
    tests: list[DriftTestOut]
    estimated_accuracy: float | None = Field(description="mean calibrated max probability, no labels needed")
    reference_accuracy: float | None = Field(description="on its labelled validation set")
    cpu_s: float = Field(description="CPU seconds the check took")


class DriftResponse(BaseModel):
    checks: list[DriftCheckOut]
    note: str | None = None


def _out(c: DriftCheck) -> DriftCheckOut:
    return DriftCheckOut(
        source=c.source, task=c.task, model_version=c.model_version,
        checked_at=dt.datetime.fromtimestamp(c.checked_at, dt.UTC), posts=c.posts, reference=c.reference,
        drifted=c.drifted, reasons=c.reasons,
        tests=[DriftTestOut(name=t.name, statistic=t.statistic, p_value=t.p_value, significant=t.significant)
               for t in c.tests],
        estimated_accuracy=c.estimated_accuracy, reference_accuracy=c.reference_accuracy, cpu_s=c.cpu_s,
    )  # fmt: skip


@api.get("/drift", response_model=DriftResponse, responses=ERRORS, dependencies=AUTH)
async def drift(
    request: Request,
    source: str | None = Query(None, min_length=1, max_length=64, description="One source (default: all)."),
    task: str | None = Query(None, min_length=1, max_length=64, description="One task (default: all)."),
) -> DriftResponse:
    """The latest drift check of each source and task: the predicted label mix against the
    reference (chi-square test, TVD), confidence (two-sample KS), pooled embeddings (MMD with
    a permutation null), and accuracy estimated from calibrated confidence."""
    checks = await _desk(request).pg(latest_checks, source, task)
    note = None if checks else "no drift check yet (they run every EMOTION_MONITOR_DRIFT__INTERVAL_S)"
    return DriftResponse(checks=[_out(c) for c in checks], note=note)
