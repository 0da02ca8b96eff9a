"""Durable history: what an analysis leaves in Redis, and how it reaches PostgreSQL.

Redis layout (all keys under `em:`):
- `em:rec:<query_id>`: one analysis as JSON (query, aggregate, posts with predictions).
  No TTL while pending; after a successful sync it expires after `retention_s`.
- `em:pending`: the set of query ids not yet in PostgreSQL.

A record leaves `em:pending` only after the PostgreSQL transaction holding it commits.
Inserts use natural primary keys with ON CONFLICT DO NOTHING, so syncing a record twice
(a crash between COMMIT and SREM, a recovery pass) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import redis

from serve_app.domain.posts import Post
from serve_app.domain.question import Question
from serve_app.domain.records import RECORD_FORMAT, HistoryRecord, PredictionRow, RecordPost
from serve_app.domain.tasks import TASKS
from serve_app.model.preprocess import normalize_keyword
from serve_app.stores.history_sql import insert_record
from serve_app.stores.scope_history import scope_record

if TYPE_CHECKING:
    from serve_app.domain.schemas import Analysis

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.history")

REC_PREFIX = "em:rec:"
PENDING = "em:pending"
HOT_PREFIX = "em:hot:"


def _text(value: object) -> str:
    """Redis answers bytes or str depending on the client: always get str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def make_record(
    question: Question,
    analysis: Analysis,
    posts: Sequence[Post],
    predictions: Mapping[str, Sequence[PredictionRow]],
    kept: Sequence[int] | None = None,
    created_at: float | None = None,
) -> HistoryRecord:
    """One analysis as a self-contained, JSON-serialisable record with a stable id.

    `predictions` holds one list per task, aligned with `kept`, the indices of the posts
    that were scored (all of them by default); the others were left out for their
    language and carry no prediction.
    """
    kept = list(range(len(posts))) if kept is None else list(kept)
    per_post: dict[int, dict[str, PredictionRow]] = {i: {} for i in kept}
    for task, preds in predictions.items():
        for i, row in zip(kept, preds, strict=True):
            per_post[i][task] = {
                "label": row["label"],
                "confidence": float(row["confidence"]),
                "scores": row["scores"],
            }
    # The breakdown fields come from the task registry; only what the record keeps is dumped
    # (not the chart).
    fields = {f for t in predictions for f in (TASKS[t].response_field, TASKS[t].among_field) if f}
    fields.add("strongly_negative")
    answer = analysis.model_dump(include=fields)
    breakdowns = {task: answer[TASKS[task].response_field] or [] for task in predictions}
    among = {
        task: answer[field]
        for task in predictions
        if (field := TASKS[task].among_field) and answer.get(field) is not None
    }
    rec: HistoryRecord = {
        "format": RECORD_FORMAT,
        "query_id": "",
        "keyword": question.keyword,
        "keyword_norm": normalize_keyword(question.keyword),
        "source": question.source,
        "limit": int(question.limit),
        "lang": question.lang,
        "model_version": analysis.model_version,
        "model_versions": dict(analysis.model_versions),
        "tasks": list(predictions),
        "created_at": created_at if created_at is not None else time.time(),
        "breakdowns": breakdowns,
        "among": among,
        "breakdown_methods": dict(analysis.breakdown_methods),
        "n_scored": len(kept),
        "strongly_negative": answer["strongly_negative"],
        "languages": dict(Counter(p.lang or "und" for p in posts)),
        "partial_reason": analysis.partial_reason,
        "excluded": dict(analysis.excluded_reasons),
        "posts": [_record_post(p, per_post.get(i, {})) for i, p in enumerate(posts)],
        "scope": scope_record(question),
    }
    rec["query_id"] = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:32]
    return rec


def _record_post(p: Post, predictions: dict[str, PredictionRow]) -> RecordPost:
    return {
        "id": p.id,
        "title": p.title,
        "body": p.body,
        "subreddit": p.subreddit,
        "created_utc": p.created_utc,
        "score": p.score,
        "url": p.url,
        "lang": p.lang,
        "lang_confidence": p.lang_confidence,
        "predictions": predictions,
        "kind": p.kind,
        "parent_id": p.parent_id,
    }


def current_format(rec: Mapping[str, Any]) -> HistoryRecord:
    """A record as this version writes it. Records written before `format` 2 (emotion at the
    top level of each post, a breakdown field per task) may still wait in Redis or in a
    replica's journal after an upgrade; they keep their query id."""
    if rec.get("format") == RECORD_FORMAT:
        return rec  # type: ignore[return-value]
    tasks = list(rec.get("tasks") or ["emotion"])
    posts = []
    for p in rec["posts"]:
        preds = {}
        if p.get("label") is not None:
            preds["emotion"] = {"label": p["label"], "confidence": p["confidence"], "scores": p["scores"]}
        if p.get("sentiment"):
            preds["sentiment"] = p["sentiment"]
        posts.append({**{k: v for k, v in p.items() if k not in _OLD_POST_KEYS}, "predictions": preds})
    breakdowns = {"emotion": rec.get("agg") or [], "sentiment": rec.get("sentiment_agg") or []}
    return {
        **{k: v for k, v in rec.items() if k not in _OLD_RECORD_KEYS},  # type: ignore[typeddict-item]
        "format": RECORD_FORMAT,
        "tasks": tasks,
        "model_versions": rec.get("model_versions") or {"emotion": rec["model_version"]},
        "breakdowns": {t: rows for t, rows in breakdowns.items() if rows},
        "among": {"emotion": rec["emotional_agg"]} if rec.get("emotional_agg") else {},
        "posts": posts,
    }


_OLD_POST_KEYS = frozenset({"label", "confidence", "scores", "sentiment"})
_OLD_RECORD_KEYS = frozenset({"agg", "sentiment_agg", "emotional_agg"})


def queue_record(pipe: Any, rec: Mapping[str, Any]) -> Any:
    """Queue on a (sync or asyncio) MULTI pipeline: write the record and mark it pending."""
    pipe.set(REC_PREFIX + rec["query_id"], json.dumps(rec, separators=(",", ":")))
    pipe.sadd(PENDING, rec["query_id"])
    return pipe


def store_record(r: redis.Redis, rec: Mapping[str, Any]) -> None:
    """Write a record and mark it pending, atomically (MULTI/EXEC)."""
    queue_record(r.pipeline(transaction=True), rec).execute()


def hot_bucket(ts: float) -> str:
    return HOT_PREFIX + time.strftime("%Y%m%d%H", time.gmtime(ts))


def queue_track(pipe: Any, keyword: str, limit: int, source: str, ts: float | None = None) -> Any:
    """Queue on a (sync or asyncio) pipeline: count a query in this hour's hot bucket."""
    key = hot_bucket(ts if ts is not None else time.time())
    pipe.zincrby(key, 1, json.dumps([normalize_keyword(keyword), int(limit), source]))
    pipe.expire(key, 25 * 3600)
    return pipe


def track_keyword(r: redis.Redis, keyword: str, limit: int, source: str, ts: float | None = None) -> None:
    """Count a query in the current hour's hot-keyword bucket (kept 25 hours)."""
    queue_track(r.pipeline(transaction=False), keyword, limit, source, ts).execute()


def hot_keywords(
    r: redis.Redis, hours: int = 24, top: int = 20, now: float | None = None
) -> list[tuple[str, int, str, float]]:
    """The most queried (keyword, limit, source) over the last `hours`, with their counts."""
    now = now if now is not None else time.time()
    totals: dict[str, float] = {}
    for h in range(hours):
        rows: list[tuple[Any, Any]] = r.zrange(hot_bucket(now - 3600 * h), 0, -1, withscores=True)  # type: ignore[assignment]
        for member, score in rows:
            m = _text(member)
            totals[m] = totals.get(m, 0.0) + float(score)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    out = []
    for member, count in ranked:
        kw, limit, source = json.loads(member)
        out.append((kw, int(limit), source, count))
    return out


# ------------------------------------------------- PostgreSQL (the schema and rows: history_sql.py)


def insert_records(conn: psycopg.Connection, records: Sequence[Mapping[str, Any]]) -> None:
    """Insert records in the caller's transaction; idempotent by primary keys."""
    with conn.cursor() as cur:
        for rec in map(current_format, records):
            insert_record(cur, rec)


@dataclass
class SyncReport:
    synced: int = 0
    skipped_missing: int = 0
    batches: int = 0
    error: str | None = None
    ids: list[str] = field(default_factory=list)


class HistorySync:
    """Moves pending records from Redis to PostgreSQL in bounded batches."""

    def __init__(self, r: redis.Redis, dsn: str, batch_size: int = 20, retention_s: int = 86_400) -> None:
        self.r = r
        self.dsn = dsn
        self.batch_size = batch_size
        self.retention_s = retention_s
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=5)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def pending(self) -> int:
        return int(self.r.scard(PENDING))

    def sync_batch(self) -> SyncReport:
        """Sync at most one batch. PostgreSQL commits first; only then do ids leave Redis."""
        report = SyncReport()
        picked: list[Any] = self.r.srandmember(PENDING, self.batch_size) or []  # type: ignore[assignment]
        ids = [_text(i) for i in picked]
        if not ids:
            return report
        raws = self.r.mget([REC_PREFIX + i for i in ids])
        records, missing = [], []
        for qid, raw in zip(ids, raws, strict=True):
            if raw is None:
                missing.append(qid)
            else:
                records.append(json.loads(raw))
        if records:
            conn = self._connection()
            try:
                insert_records(conn, records)
                conn.commit()
            except Exception:
                try:
                    conn.rollback()
                except psycopg.Error:
                    self.close()
                raise
        pipe = self.r.pipeline(transaction=True)
        done = [rec["query_id"] for rec in records]
        if done:
            pipe.srem(PENDING, *done)
            for qid in done:
                pipe.expire(REC_PREFIX + qid, self.retention_s)
        if missing:
            # A pending id without its record cannot be synced; say so loudly, never silently.
            log.error("pending ids without a record in Redis (dropped from pending): %s", missing)
            pipe.srem(PENDING, *missing)
        pipe.execute()
        report.synced, report.skipped_missing, report.batches, report.ids = len(done), len(missing), 1, done
        return report

    def recover(self, scan_count: int = 500) -> int:
        """Find records in Redis that PostgreSQL lacks and are not pending; mark them pending."""
        found: list[str] = []
        for key in self.r.scan_iter(match=REC_PREFIX + "*", count=scan_count):
            found.append(_text(key).removeprefix(REC_PREFIX))
        if not found:
            return 0
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute("SELECT query_id FROM queries WHERE query_id = ANY(%s)", (found,))
            present = {row[0] for row in cur.fetchall()}
        conn.commit()
        missing = [q for q in found if q not in present]
        if missing:
            members: set[Any] = self.r.smembers(PENDING)
            pending = {_text(m) for m in members}
            new = [q for q in missing if q not in pending]
            if new:
                self.r.sadd(PENDING, *new)
                log.warning("recovery: %d records in Redis were not in PostgreSQL; queued", len(new))
            return len(new)
        return 0
