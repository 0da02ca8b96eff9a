"""History records for tests, built by the service's own `make_record`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from serve_app.domain.posts import Post
from serve_app.domain.question import Question
from serve_app.domain.records import HistoryRecord, PredictionRow
from serve_app.domain.schemas import Analysis
from serve_app.stores.history import make_record


def history_record(
    keyword: str,
    posts: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Sequence[PredictionRow]],
    *,
    source: str = "jsonl",
    limit: int = 250,
    created_at: float | None = None,
    kept: Sequence[int] | None = None,
    breakdowns: Mapping[str, Any] | None = None,
    model_versions: Mapping[str, str] | None = None,
    strongly_negative: Mapping[str, Any] | None = None,
    partial_reason: str | None = None,
    excluded: Mapping[str, int] | None = None,
) -> HistoryRecord:
    """`breakdowns`: the answer's breakdown fields (`agg`, `sentiment_agg`, ...)."""
    versions = dict(model_versions or dict.fromkeys(predictions, "test-v1"))
    analysis = Analysis.model_validate(
        {
            **(breakdowns or {}),
            "keyword": keyword,
            "count": len(posts),
            "tasks": list(predictions),
            "model_versions": versions,
            "model_version": versions.get("emotion") or next(iter(versions.values())),
            "post_source": source,
            "strongly_negative": strongly_negative,
            "partial": partial_reason is not None,
            "partial_reason": partial_reason,
            "excluded_reasons": dict(excluded or {}),
        }
    )
    question = Question(keyword, limit, source, tuple(predictions), 0.8)
    return make_record(question, analysis, [Post(**p) for p in posts], predictions, kept, created_at)
