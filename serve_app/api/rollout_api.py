"""`GET /models/compare`: the live and the candidate version on the same posts (the shadow
pairs in PostgreSQL), per head. Registered on the ingress's app by importing this module."""
# No `from __future__ import annotations`: FastAPI must see real types.

import datetime as dt

from fastapi import Query, Request
from pydantic import BaseModel

from serve_app.api.http_api import AUTH, ERRORS, api
from serve_app.api.watch_api import _desk
from serve_app.lifecycle.agreement import HeadComparison, compare_pairs
from serve_app.stores.shadow_store import load_pairs


class ModelCompareResponse(BaseModel):
    """One comparison per (task, live version, candidate version) among the stored pairs."""

    since: dt.datetime | None
    comparisons: list[HeadComparison]


@api.get("/models/compare", response_model=ModelCompareResponse, responses=ERRORS, dependencies=AUTH)
async def models_compare(
    request: Request,
    task: str | None = Query(None, min_length=1, max_length=64, description="One task (default: all)."),
    live_version: str | None = Query(None, min_length=1, max_length=128),
    candidate_version: str | None = Query(None, min_length=1, max_length=128),
    since_hours: float | None = Query(None, gt=0, le=24 * 365, description="Only pairs this recent."),
) -> ModelCompareResponse:
    """Agreement, Cohen's kappa, the live-by-candidate confusion matrix, each label's share
    difference with a paired 95 % interval, the Stuart-Maxwell test of the label mix, and
    each version's median model time per post, from the shadow pairs."""
    since = None if since_hours is None else dt.datetime.now(dt.UTC) - dt.timedelta(hours=since_hours)
    pairs = await _desk(request).pg(load_pairs, task, live_version, candidate_version, since)
    return ModelCompareResponse(since=since, comparisons=compare_pairs(pairs))
