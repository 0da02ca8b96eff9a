"""Watchlists, trends and alerts in PostgreSQL (tables from migration 0006).

Plain functions over a DSN, called from the ingress (in a thread) and the monitor actor.
Errors reaching PostgreSQL raise `HistoryUnavailable`; the ingress answers 503.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from serve_app.domain.errors import EmotionMonitorError
from serve_app.domain.records import EmergingTermRow
from serve_app.domain.scope import Scope
from serve_app.explain.drivers import emerging_terms
from serve_app.model.preprocess import normalize_keyword, post_text
from serve_app.monitoring.trends import Bucket, Spike, buckets_from_rows


class HistoryUnavailable(EmotionMonitorError):
    """PostgreSQL could not be reached or refused the statement."""

    def __init__(self, detail: str) -> None:
        self.message = f"history database unavailable: {detail}"
        super().__init__(self.message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message.removeprefix("history database unavailable: "),))


@dataclass(frozen=True)
class Watch:
    keyword: str
    every_s: int
    source: str
    tasks: tuple[str, ...]
    limit: int
    created_at: float | None = None
    last_run_at: float | None = None
    last_error: str | None = None
    # Subreddits, time window, sort (migration 0008); a monitor wants the newest posts.
    scope: Scope = field(default_factory=lambda: Scope(sort="new"))

    @property
    def keyword_norm(self) -> str:
        return normalize_keyword(self.keyword)

    def due(self, now: float) -> bool:
        return self.last_run_at is None or now - self.last_run_at >= self.every_s


def _reason(exc: psycopg.Error) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextmanager
def _connect(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; any PostgreSQL error, connecting or after, is HistoryUnavailable."""
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            yield conn
    except psycopg.Error as exc:
        raise HistoryUnavailable(_reason(exc)) from None


def ensure_schema(dsn: str) -> None:
    """Apply pending migrations (idempotent): the ingress may answer before the sync ran them."""
    from serve_app.stores.history_sql import migrate

    try:
        migrate(dsn)
    except psycopg.Error as exc:
        raise HistoryUnavailable(_reason(exc)) from None


def _epoch(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


_WATCH_COLS = (
    "keyword, every_s, source, tasks, post_limit, created_at, last_run_at, last_error,"
    " subreddits, exclude_subreddits, time_window, since, until, sort"
)


def _watch(row: Sequence[Any]) -> Watch:
    scope = Scope(tuple(row[8]), tuple(row[9]), row[10], _epoch(row[11]), _epoch(row[12]), row[13])
    return Watch(row[0], row[1], row[2], tuple(row[3]), row[4], _epoch(row[5]), _epoch(row[6]), row[7], scope)


def _when(ts: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None


def add_watch(dsn: str, w: Watch) -> Watch:
    """Create or update (same keyword, any case or spacing) a watch; returns it as stored."""
    with _connect(dsn) as c:
        row = c.execute(
            "INSERT INTO watches (keyword_norm, keyword, every_s, source, tasks, post_limit, subreddits,"
            " exclude_subreddits, time_window, since, until, sort)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (keyword_norm) DO UPDATE SET"
            " keyword = EXCLUDED.keyword, every_s = EXCLUDED.every_s, source = EXCLUDED.source,"
            " tasks = EXCLUDED.tasks, post_limit = EXCLUDED.post_limit, subreddits = EXCLUDED.subreddits,"
            " exclude_subreddits = EXCLUDED.exclude_subreddits, time_window = EXCLUDED.time_window,"
            " since = EXCLUDED.since, until = EXCLUDED.until, sort = EXCLUDED.sort"
            f" RETURNING {_WATCH_COLS}",
            (
                w.keyword_norm,
                w.keyword,
                w.every_s,
                w.source,
                list(w.tasks),
                w.limit,
                list(w.scope.subreddits),
                list(w.scope.exclude_subreddits),
                w.scope.time_window,
                _when(w.scope.since),
                _when(w.scope.until),
                w.scope.sort,
            ),
        ).fetchone()
    assert row is not None
    return _watch(row)


def list_watches(dsn: str) -> list[Watch]:
    with _connect(dsn) as c:
        rows = c.execute(f"SELECT {_WATCH_COLS} FROM watches ORDER BY keyword_norm").fetchall()
    return [_watch(r) for r in rows]


def remove_watch(dsn: str, keyword: str) -> bool:
    with _connect(dsn) as c:
        cur = c.execute("DELETE FROM watches WHERE keyword_norm = %s", (normalize_keyword(keyword),))
        return cur.rowcount > 0


def mark_run(dsn: str, keyword: str, error: str | None, at: float | None = None) -> None:
    with _connect(dsn) as c:
        c.execute(
            "UPDATE watches SET last_run_at = %s, last_error = %s WHERE keyword_norm = %s",
            (dt.datetime.fromtimestamp(at or time.time(), dt.UTC), error, normalize_keyword(keyword)),
        )


# The latest label of every post analysed for the keyword, counted per bucket of the post's
# own creation time. Bucket starts are whole multiples of the bucket size (UTC).
_TREND_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (p.task, p.source, p.post_id)
           p.task, p.label, extract(epoch FROM po.created_utc) AS t
    FROM predictions p
    JOIN queries q USING (query_id)
    JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
    WHERE q.keyword_norm = %(kw)s AND po.created_utc >= %(since)s
    ORDER BY p.task, p.source, p.post_id, q.created_at DESC
)
SELECT floor(t / %(bucket)s) * %(bucket)s AS start, task, label, count(*)
FROM latest GROUP BY 1, 2, 3 ORDER BY 1
"""

# The same, for the spike test: only posts whose latest label came from the version that
# labelled the keyword's newest analysis, per task. After a model change the baseline holds
# only what the new version scored (it restarts), so a version's different label mix is
# never compared against the old version's and raises no alert by itself.
_TREND_CURRENT_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (p.task, p.source, p.post_id)
           p.task, p.label, p.model_version, extract(epoch FROM po.created_utc) AS t
    FROM predictions p
    JOIN queries q USING (query_id)
    JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
    WHERE q.keyword_norm = %(kw)s AND po.created_utc >= %(since)s
    ORDER BY p.task, p.source, p.post_id, q.created_at DESC
), current AS (
    SELECT DISTINCT ON (p.task) p.task, p.model_version
    FROM predictions p JOIN queries q USING (query_id)
    WHERE q.keyword_norm = %(kw)s
    ORDER BY p.task, q.created_at DESC
)
SELECT floor(l.t / %(bucket)s) * %(bucket)s AS start, l.task, l.label, count(*)
FROM latest l JOIN current c ON c.task = l.task AND c.model_version = l.model_version
GROUP BY 1, 2, 3 ORDER BY 1
"""


def trend_buckets(
    dsn: str, keyword: str, bucket_s: int, since: float, current_version_only: bool = False
) -> list[Bucket]:
    """Trend buckets; `current_version_only`: the spike test's (see _TREND_CURRENT_SQL)."""
    with _connect(dsn) as c:
        rows = c.execute(
            _TREND_CURRENT_SQL if current_version_only else _TREND_SQL,
            {
                "kw": normalize_keyword(keyword),
                "since": dt.datetime.fromtimestamp(since, dt.UTC),
                "bucket": bucket_s,
            },
        ).fetchall()
    return buckets_from_rows((float(r[0]), r[1], r[2], int(r[3])) for r in rows)


# The texts of the keyword's posts created in [since, until): each post once.
_TEXTS_SQL = """
SELECT DISTINCT ON (po.source, po.post_id) po.title, po.body
FROM predictions p
JOIN queries q USING (query_id)
JOIN posts po ON po.source = p.source AND po.post_id = p.post_id
WHERE q.keyword_norm = %(kw)s AND po.created_utc >= %(since)s AND po.created_utc < %(until)s
ORDER BY po.source, po.post_id
LIMIT %(cap)s
"""


def post_texts(dsn: str, keyword: str, since: float, until: float, cap: int = 5000) -> list[str]:
    """The texts (title, then body) of at most `cap` of the keyword's posts created in [since, until)."""
    with _connect(dsn) as c:
        rows = c.execute(
            _TEXTS_SQL,
            {
                "kw": normalize_keyword(keyword),
                "since": dt.datetime.fromtimestamp(since, dt.UTC),
                "until": dt.datetime.fromtimestamp(until, dt.UTC),
                "cap": cap,
            },
        ).fetchall()
    return [post_text(r[0], r[1]) for r in rows]


def spike_terms(dsn: str, spike: Spike, baseline_buckets: int) -> tuple[EmergingTermRow, ...]:
    """The terms that rose in the spike's bucket against the `baseline_buckets` before it."""
    start, size = spike.bucket_start, spike.bucket_s
    bucket = post_texts(dsn, spike.keyword, start, start + size)
    baseline = post_texts(dsn, spike.keyword, start - baseline_buckets * size, start)
    return tuple(emerging_terms(bucket, baseline, spike.keyword))


@dataclass(frozen=True)
class AlertRow(Spike):
    """A recorded spike and its webhook delivery state."""

    created_at: float = 0.0
    delivery: str = "none"  # none | pending | delivered | failed
    attempts: int = 0
    last_error: str | None = None
    delivered_at: float | None = None


_ALERT_COLS = (
    "alert_id, keyword_norm, task, label, bucket_start, bucket_s, share, baseline, z, posts,"
    " baseline_posts, created_at, delivery, attempts, last_error, delivered_at, emerging_terms"
)


def _alert(r: Sequence[Any]) -> AlertRow:
    # alert_id (r[0]) is derived from the keyword, label and bucket again by Spike.
    return AlertRow(
        keyword=r[1], task=r[2], label=r[3], bucket_start=r[4].timestamp(), bucket_s=r[5], share=r[6],
        baseline=r[7], z=r[8], posts=r[9], baseline_posts=r[10], created_at=r[11].timestamp(),
        delivery=r[12], attempts=r[13], last_error=r[14], delivered_at=_epoch(r[15]),
        emerging_terms=tuple(r[16] or ()),
    )  # fmt: skip


def record_alert(dsn: str, spike: Spike, webhook: bool) -> bool:
    """Record a spike once (by its id); whether it was new."""
    with _connect(dsn) as c:
        cur = c.execute(
            "INSERT INTO alerts (alert_id, keyword_norm, task, label, bucket_start, bucket_s, share,"
            " baseline, z, posts, baseline_posts, delivery, emerging_terms)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (alert_id) DO NOTHING",
            (
                spike.alert_id, spike.keyword, spike.task, spike.label,
                dt.datetime.fromtimestamp(spike.bucket_start, dt.UTC), spike.bucket_s, spike.share,
                spike.baseline, spike.z, spike.posts, spike.baseline_posts, "pending" if webhook else "none",
                Jsonb(list(spike.emerging_terms)),
            ),
        )  # fmt: skip
        return cur.rowcount > 0


def list_alerts(dsn: str, keyword: str | None = None, limit: int = 100) -> list[AlertRow]:
    where, args = ("WHERE keyword_norm = %s", [normalize_keyword(keyword)]) if keyword else ("", [])
    with _connect(dsn) as c:
        rows = c.execute(
            f"SELECT {_ALERT_COLS} FROM alerts {where} ORDER BY created_at DESC, alert_id LIMIT %s",
            (*args, limit),
        ).fetchall()
    return [_alert(r) for r in rows]


def pending_alerts(dsn: str) -> list[AlertRow]:
    with _connect(dsn) as c:
        rows = c.execute(
            f"SELECT {_ALERT_COLS} FROM alerts WHERE delivery = 'pending' ORDER BY created_at"
        ).fetchall()
    return [_alert(r) for r in rows]


def mark_delivery(dsn: str, alert_id: str, delivered: bool, error: str | None, max_attempts: int) -> None:
    """One delivery attempt's outcome; past `max_attempts` failures the alert is `failed`."""
    with _connect(dsn) as c:
        c.execute(
            "UPDATE alerts SET attempts = attempts + 1, last_attempt_at = now(), last_error = %s,"
            " delivered_at = CASE WHEN %s THEN now() ELSE delivered_at END,"
            " delivery = CASE WHEN %s THEN 'delivered'"
            " WHEN attempts + 1 >= %s THEN 'failed' ELSE delivery END"
            " WHERE alert_id = %s AND delivery = 'pending'",
            (error, delivered, delivered, max_attempts, alert_id),
        )
