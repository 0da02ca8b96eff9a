"""An analysis's scope and comments in its history record and in PostgreSQL (migration 0008).

The record keeps the scope (`ScopeRecord`) and each text's kind and parent; the sync writes
them with two idempotent UPDATEs after the rows are inserted, so the insert statements of
`serve_app.stores.history` stay as they were.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from serve_app.domain.question import Question
from serve_app.domain.records import ScopeRecord


def scope_record(q: Question) -> ScopeRecord:
    s = q.scope
    return {
        "subreddits": list(s.subreddits),
        "exclude_subreddits": list(s.exclude_subreddits),
        "time_window": s.time_window,
        "since": s.since,
        "until": s.until,
        "sort": s.sort,
        "include_comments": q.include_comments,
        "count_over": q.count_over,
    }


def _ts(value: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value, dt.UTC) if value is not None else None


_UPDATE_QUERY = (
    "UPDATE queries SET subreddits = %s, exclude_subreddits = %s, time_window = %s, since = %s,"
    " until = %s, sort = %s, include_comments = %s, count_over = %s, n_comments = %s"
    " WHERE query_id = %s"
)
_UPDATE_COMMENT = "UPDATE posts SET kind = 'comment', parent_id = %s WHERE source = %s AND post_id = %s"


def _comment_rows(rec: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    for p in rec["posts"]:
        if p.get("kind") == "comment":
            yield (p.get("parent_id"), rec["source"], p["id"])


def write_scope(cur: Any, rec: Mapping[str, Any]) -> None:
    """Write a synced record's scope and its comments' kind (records before 0008: nothing)."""
    scope: ScopeRecord | None = rec.get("scope")
    if scope is None:
        return
    comments = list(_comment_rows(rec))
    cur.execute(
        _UPDATE_QUERY,
        (
            scope["subreddits"],
            scope["exclude_subreddits"],
            scope["time_window"],
            _ts(scope["since"]),
            _ts(scope["until"]),
            scope["sort"],
            scope["include_comments"],
            scope["count_over"],
            len(comments),
            rec["query_id"],
        ),
    )
    if comments:
        cur.executemany(_UPDATE_COMMENT, comments)
