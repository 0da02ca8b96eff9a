"""The PostgreSQL side of the history: schema migrations, and the rows one record becomes.

serve_app/stores/history.py moves records from Redis here (`insert_records` upgrades older
record formats first); every insert is idempotent by its natural primary key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from serve_app.domain.records import HistoryRecord, RecordPost
from serve_app.flow.export import INSERT_TEXTS, text_rows
from serve_app.stores.scope_history import write_scope


def migration_files() -> list[tuple[str, str]]:
    pkg = resources.files("serve_app.migrations")
    files = sorted(p.name for p in pkg.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (pkg / name).read_text()) for name in files]


def migrate(dsn: str) -> list[str]:
    """Apply every migration not yet applied, in order; return the ones applied now."""
    applied_now = []
    with psycopg.connect(dsn, autocommit=False, connect_timeout=5) as conn:
        # One migrator at a time, even with several replicas starting together.
        conn.execute("SELECT pg_advisory_xact_lock(727274)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version not in done:
                conn.execute(sql.encode())  # trusted DDL shipped in the package
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
        conn.commit()
    return applied_now


def _ts(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)


_INSERT_QUERY = (
    "INSERT INTO queries (query_id, keyword, keyword_norm, source, post_limit, lang,"
    " model_version, created_at, n_posts, tasks, model_versions, n_scored,"
    " n_strongly_negative, languages, negative_threshold, breakdown_methods, partial_reason,"
    " excluded) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (query_id) DO NOTHING"
)
_INSERT_POST = (
    "INSERT INTO posts (source, post_id, title, body, subreddit, created_utc, score, url,"
    " lang, lang_confidence) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (source, post_id) DO NOTHING"
)
_INSERT_PREDICTION = (
    "INSERT INTO predictions (query_id, source, post_id, task, model_version, label, confidence, scores)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
)
_INSERT_AGGREGATE = (
    "INSERT INTO query_aggregates (query_id, task, label, pct, n, avg_score, pct_low, pct_high,"
    " pct_among, pct_among_low, pct_among_high)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
)


def _query_row(rec: HistoryRecord) -> tuple[Any, ...]:
    negative = rec["strongly_negative"]
    return (
        rec["query_id"],
        rec["keyword"],
        rec["keyword_norm"],
        rec["source"],
        rec["limit"],
        rec["lang"],
        rec["model_version"],
        _ts(rec["created_at"]),
        len(rec["posts"]),
        rec["tasks"],
        Jsonb(rec["model_versions"]),
        rec["n_scored"],
        negative["count"] if negative else None,
        Jsonb(rec["languages"]),
        negative["threshold"] if negative else None,
        Jsonb(rec["breakdown_methods"]) if rec["breakdown_methods"] else None,
        rec.get("partial_reason"),
        Jsonb(rec["excluded"]) if rec.get("excluded") else None,
    )


def _post_row(source: str, p: RecordPost) -> tuple[Any, ...]:
    return (
        source,
        p["id"],
        p["title"],
        p["body"],
        p["subreddit"],
        _ts(p["created_utc"]),
        p["score"],
        p["url"],
        p.get("lang"),
        p.get("lang_confidence"),
    )


def _prediction_rows(rec: HistoryRecord) -> Iterator[tuple[Any, ...]]:
    for p in rec["posts"]:
        for task, row in p["predictions"].items():
            yield (
                rec["query_id"],
                rec["source"],
                p["id"],
                task,
                rec["model_versions"].get(task, ""),
                row["label"],
                min(1.0, max(0.0, float(row["confidence"]))),
                Jsonb(row["scores"]),
            )


def _aggregate_rows(rec: HistoryRecord) -> Iterator[tuple[Any, ...]]:
    for task, rows in rec["breakdowns"].items():
        among = {a["label"]: a for a in rec["among"].get(task, [])}
        for a in rows:
            yield (
                rec["query_id"],
                task,
                a["label"],
                a["pct"],
                a.get("count", 0),
                a["avg_score"],
                a.get("pct_low"),
                a.get("pct_high"),
                *_among(among.get(a["label"])),
            )


def _among(row: Mapping[str, Any] | None) -> tuple[Any, Any, Any]:
    """A label's share among the posts with another label than the rest label, with its
    interval (NULLs where there is none)."""
    if row is None:
        return (None, None, None)
    return (row["pct"], row.get("pct_low"), row.get("pct_high"))


def insert_record(cur: psycopg.Cursor[TupleRow], rec: HistoryRecord) -> None:
    """One record's rows (current format) in the cursor's transaction: the query, its posts,
    predictions and aggregates, its scope and the export's copy of the texts."""
    cur.execute(_INSERT_QUERY, _query_row(rec))
    cur.executemany(_INSERT_POST, [_post_row(rec["source"], p) for p in rec["posts"]])
    cur.executemany(_INSERT_PREDICTION, list(_prediction_rows(rec)))
    cur.executemany(_INSERT_AGGREGATE, list(_aggregate_rows(rec)))
    write_scope(cur, rec)  # scope and comments (0008)
    cur.executemany(INSERT_TEXTS, list(text_rows(rec)))  # the export's copy (0010)
