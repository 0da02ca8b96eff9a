"""HTTP routes for watchlists, trends and alerts (the page at `/` shows them: serve_app.api.page_api).

Plain FastAPI routes on the ingress's app, beside the Ingress's own: they need no model or
handle, only PostgreSQL and two answers from the ingress replica they run in (which tasks
are served, the per-client rate limit), which it leaves in `app.state.watch`.
"""
# No `from __future__ import annotations`: FastAPI must see real types.

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Concatenate, Literal, ParamSpec, TypeVar

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse

from serve_app.api.http_api import AUTH, ERRORS, api
from serve_app.domain.errors import ServiceUnavailable
from serve_app.domain.schemas import (
    MAX_KEYWORD_CHARS,
    AlertOut,
    AlertsResponse,
    ErrorResponse,
    TrendBucket,
    TrendsResponse,
    WatchList,
    WatchOut,
    WatchRequest,
)
from serve_app.domain.scope_fields import scope_echo
from serve_app.monitoring.trends import parse_bucket
from serve_app.stores.watchlists import (
    HistoryUnavailable,
    Watch,
    add_watch,
    ensure_schema,
    list_alerts,
    list_watches,
    remove_watch,
    trend_buckets,
)

MAX_UNIX_TIME = 4_102_444_800  # 2100-01-01: later `since` values are mistakes, not trends


P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass
class WatchDesk:
    """What the watch routes need from the replica they run in."""

    postgres_url: str | None
    default_source: str
    served_tasks: Callable[[Sequence[str] | None], Awaitable[list[str]]]  # 400 if one is not served
    rate_limit: Callable[[Request], None]
    schema_ready: bool = False

    async def pg(self, fn: Callable[Concatenate[str, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A query in a thread; 503 when PostgreSQL is not configured or not reachable."""
        if not self.postgres_url:
            raise ServiceUnavailable(
                "watchlists, trends and alerts need PostgreSQL: set EMOTION_MONITOR_STORES__POSTGRES_URL "
                "(or keep EMOTION_MONITOR_STORES__EMBEDDED on)",
                60,
            )
        try:
            if not self.schema_ready:
                await asyncio.to_thread(ensure_schema, self.postgres_url)
                self.schema_ready = True
            return await asyncio.to_thread(fn, self.postgres_url, *args, **kwargs)
        except HistoryUnavailable as exc:
            raise ServiceUnavailable(exc.message, 10) from None


def _desk(request: Request) -> WatchDesk:
    desk: WatchDesk | None = getattr(request.app.state, "watch", None)
    if desk is None:
        raise ServiceUnavailable("the service is starting; retry shortly", 5)
    return desk


def _watch_out(w: Watch) -> WatchOut:
    fields = {k: v for k, v in dataclasses.asdict(w).items() if k not in ("scope", "tasks")}
    return WatchOut(**fields, tasks=list(w.tasks), scope=scope_echo(w.scope, 0, "posts", time.time()))


@api.post("/watch", response_model=WatchOut, status_code=201, responses=ERRORS, dependencies=AUTH)
async def watch_add(req: WatchRequest, request: Request) -> WatchOut:
    """Watch a keyword: poll it every `every_s` seconds, keep its trend, raise spike alerts."""
    desk = _desk(request)
    desk.rate_limit(request)
    tasks = await desk.served_tasks(req.tasks)
    source = req.source or desk.default_source
    watch = Watch(req.keyword, req.every_s, source, tuple(tasks), req.limit, scope=req.scope())
    return _watch_out(await desk.pg(add_watch, watch))


@api.get("/watch", response_model=WatchList, responses=ERRORS, dependencies=AUTH)
async def watch_list(request: Request) -> WatchList:
    """Every watched keyword, with its last poll."""
    return WatchList(watches=[_watch_out(w) for w in await _desk(request).pg(list_watches)])


@api.delete(
    "/watch/{keyword}", status_code=204, responses=ERRORS | {404: {"model": ErrorResponse}}, dependencies=AUTH
)
async def watch_remove(keyword: str, request: Request) -> Response:
    """Stop watching a keyword (its history and alerts stay)."""
    if not await _desk(request).pg(remove_watch, keyword):
        return JSONResponse({"detail": f"{keyword!r} is not watched"}, status_code=404)
    return Response(status_code=204)


@api.get("/trends", response_model=TrendsResponse, responses=ERRORS, dependencies=AUTH)
async def trends(
    request: Request,
    keyword: str = Query(..., min_length=1, max_length=MAX_KEYWORD_CHARS),
    bucket: Literal["1m", "15m", "1h", "6h", "1d"] = Query(
        "1h", description="Bucket size (1m suits the replayed feed of `emotion-monitor demo`)."
    ),
    since: float | None = Query(
        None, ge=0, le=MAX_UNIX_TIME, description="Unix seconds (default: 7 days ago)."
    ),
) -> TrendsResponse:
    """Per time bucket of the posts' own creation time: posts and each label's share with its
    95 % interval, for every task; a post seen by several analyses counts once."""
    start = since if since is not None else time.time() - 7 * 86_400
    size = parse_bucket(bucket)
    buckets = await _desk(request).pg(trend_buckets, keyword, size, start)
    return TrendsResponse(
        keyword=" ".join(keyword.split()),
        bucket_s=size,
        since=start,
        buckets=[TrendBucket(**dataclasses.asdict(b)) for b in buckets],
    )


@api.get("/alerts", response_model=AlertsResponse, responses=ERRORS, dependencies=AUTH)
async def alerts(
    request: Request,
    keyword: str | None = Query(None, min_length=1, max_length=MAX_KEYWORD_CHARS),
    limit: int = Query(100, ge=1, le=1000),
) -> AlertsResponse:
    """Spike alerts, newest first, with their webhook delivery state."""
    rows = await _desk(request).pg(list_alerts, keyword, limit)
    return AlertsResponse(alerts=[AlertOut(**dataclasses.asdict(a)) for a in rows])
