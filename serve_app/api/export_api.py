"""`GET /analyses/{analysis_id}/posts`: an analysis's scored texts as CSV or JSON lines.

A plain route on the ingress's app (it needs no model): the ingress replica leaves its
Redis client and the PostgreSQL URL in `app.state.export`.
"""
# No `from __future__ import annotations`: FastAPI must see real types.

import asyncio
import dataclasses
from typing import Literal

import psycopg
import redis.asyncio as aioredis
from fastapi import Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from serve_app.api.http_api import AUTH, ERRORS, api
from serve_app.domain.errors import ServiceUnavailable
from serve_app.domain.schemas import ErrorResponse
from serve_app.flow.export import MEDIA_TYPES, AnalysisExpired, AnalysisNotFound, achunks, filename
from serve_app.stores.export_store import ExportSource, RedisDown, from_postgres, from_record, held_record
from serve_app.stores.watchlists import HistoryUnavailable, ensure_schema

ANALYSIS_ID_PATTERN = r"^[0-9a-f]{32}$"


@dataclasses.dataclass
class ExportDesk:
    """What the export route needs from the replica it runs in."""

    redis: aioredis.Redis | None
    postgres_url: str | None
    schema_ready: bool = False

    async def source(self, analysis_id: str, fmt: Literal["csv", "jsonl"]) -> ExportSource:
        redis_down = None
        try:
            rec = await held_record(self.redis, analysis_id)
            if rec is not None:
                return from_record(rec, fmt)
        except RedisDown as exc:
            redis_down = exc
        try:
            if self.postgres_url and not self.schema_ready:
                await asyncio.to_thread(ensure_schema, self.postgres_url)
                self.schema_ready = True
            return await asyncio.to_thread(from_postgres, self.postgres_url, analysis_id, fmt)
        except (psycopg.Error, HistoryUnavailable) as exc:
            raise ServiceUnavailable(
                f"the analysis is not in Redis and PostgreSQL did not answer ({type(exc).__name__}); "
                "retry shortly",
                10,
            ) from None
        except AnalysisNotFound as exc:
            if redis_down is None or isinstance(exc, AnalysisExpired):
                raise
            # A record answered while Redis was down waits in the replica's journal.
            raise ServiceUnavailable(
                f"Redis is unavailable ({redis_down}) and PostgreSQL has no analysis {analysis_id} yet; "
                "retry once Redis is back",
                10,
            ) from None


EXPORT_RESPONSES = ERRORS | {
    200: {
        "description": "The scored texts: CSV (UTF-8 with BOM) or JSON lines, as an attachment.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
    404: {"model": ErrorResponse, "description": "No analysis with this id is recorded"},
    410: {"model": ErrorResponse, "description": "The analysis is recorded but its texts are no longer kept"},
}


@api.get(
    "/analyses/{analysis_id}/posts",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
    dependencies=AUTH,
)
async def analysis_posts(
    request: Request,
    analysis_id: str = Path(
        ..., pattern=ANALYSIS_ID_PATTERN, description="The `analysis_id` of an /analyze or /compare answer."
    ),
    fmt: Literal["csv", "jsonl"] = Query("csv", alias="format", description="csv (UTF-8 with BOM) or jsonl."),
) -> Response:
    """Each scored text of an analysis: id, kind, link, subreddit, created time (ISO UTC), title,
    text, language, and per task its label, confidence and every label's score. Streamed; the
    same bytes before and after the history sync."""
    desk: ExportDesk | None = getattr(request.app.state, "export", None)
    if desk is None:
        raise ServiceUnavailable("the service is starting; retry shortly", 5)
    try:
        src = await desk.source(analysis_id, fmt)
    except AnalysisExpired as exc:
        return JSONResponse({"detail": exc.detail}, status_code=410)
    except AnalysisNotFound as exc:
        return JSONResponse({"detail": exc.detail}, status_code=404)
    name = filename(analysis_id, src.keyword, fmt)
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Export-Source": src.where}
    body = achunks(src.parts) if src.where == "redis" else src.parts  # a blocking iterator runs in a thread
    return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)
