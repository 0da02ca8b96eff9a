"""Where an analysis's scored texts are read for export: the held record in Redis while it
is there, PostgreSQL's `analysis_texts` after the sync (serve_app.flow.export encodes both)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis

from serve_app.domain.records import HistoryRecord
from serve_app.flow.export import (
    AnalysisExpired,
    AnalysisNotFound,
    ExportFormat,
    ExportText,
    chunks,
    record_chunks,
)
from serve_app.stores.history import REC_PREFIX, current_format

PG_FETCH_ROWS = 200  # texts per round trip of the server-side cursor


@dataclass(frozen=True)
class ExportSource:
    """An export ready to stream: `where` it is read from, and the keyword (file name)."""

    keyword: str
    where: str  # redis | postgres
    parts: Iterator[bytes]


class RedisDown(Exception):
    """Redis did not answer: a record may be held (journal) until it returns."""


async def held_record(client: aioredis.Redis | None, analysis_id: str) -> HistoryRecord | None:
    """The record in Redis, or None (absent, or no Redis configured); RedisDown if unreachable."""
    if client is None:
        return None
    try:
        raw = await client.get(REC_PREFIX + analysis_id)
    except (redis.RedisError, OSError) as exc:
        raise RedisDown(type(exc).__name__) from None
    return None if raw is None else current_format(json.loads(raw))


def from_record(rec: HistoryRecord, fmt: ExportFormat) -> ExportSource:
    return ExportSource(rec["keyword"], "redis", record_chunks(rec, fmt))


def _text(row: Sequence[Any]) -> ExportText:
    return {
        "id": row[0],
        "kind": row[1],
        "parent_id": row[2],
        "link": row[3],
        "subreddit": row[4],
        "created_utc": row[5],
        "title": row[6],
        "text": row[7],
        "language": row[8],
        "predictions": row[9],
    }


def _pg_texts(dsn: str, analysis_id: str) -> Iterator[ExportText]:
    """The texts in record order through a server-side cursor: memory stays flat."""
    with (
        psycopg.connect(dsn, connect_timeout=5) as conn,
        conn.transaction(),
        conn.cursor(name="analysis_texts_export") as cur,
    ):
        cur.execute(
            "SELECT post_id, kind, parent_id, link, subreddit, created_utc, title, body, lang,"
            " predictions FROM analysis_texts WHERE query_id = %s ORDER BY position",
            (analysis_id,),
        )
        while rows := cur.fetchmany(PG_FETCH_ROWS):
            yield from map(_text, rows)


def from_postgres(dsn: str | None, analysis_id: str, fmt: ExportFormat) -> ExportSource:
    """The export from PostgreSQL (blocking: call in a thread); the rows stream lazily.

    Raises AnalysisNotFound (no such analysis) or AnalysisExpired (known, texts not kept)."""
    unknown = (
        f"no analysis {analysis_id} is recorded: the id is unknown, its analysis fetched no posts, "
        "or the service keeps no history; run /analyze again for a new analysis_id"
    )
    if not dsn:
        raise AnalysisNotFound(analysis_id, unknown + " (PostgreSQL is not configured)")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT q.keyword, q.tasks, coalesce(q.n_scored, q.n_posts),"
            " EXISTS (SELECT 1 FROM analysis_texts t WHERE t.query_id = q.query_id)"
            " FROM queries q WHERE q.query_id = %s",
            (analysis_id,),
        ).fetchone()
    if row is None:
        raise AnalysisNotFound(analysis_id, unknown)
    keyword, tasks, scored, has_texts = row
    if scored and not has_texts:
        raise AnalysisExpired(
            analysis_id,
            f"analysis {analysis_id} ({keyword!r}) is recorded, but its texts are no longer kept: "
            "it was synced before texts were stored for export (migration 0010); run /analyze again",
        )
    return ExportSource(keyword, "postgres", chunks(fmt, list(tasks), _pg_texts(dsn, analysis_id)))
