"""The CLI's rendering of an /analyze answer (both breakdowns, languages, urgent posts)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from tooling.cli import app
from tooling.cli.analyze import format_analysis

pytestmark = pytest.mark.unit


def _agg(labels: list[str], pcts: list[float]) -> list[dict[str, Any]]:
    return [
        {"label": lab, "pct": p, "count": int(p), "avg_score": 0.9}
        for lab, p in zip(labels, pcts, strict=True)
    ]


ANSWER: dict[str, Any] = {
    "keyword": "zorblax",
    "count": 12,
    "scored": 9,
    "excluded": 3,
    "agg": _agg(["joy", "anger"], [66.7, 33.3]),
    "sentiment_agg": _agg(["negative", "positive"], [55.6, 44.4]),
    "strongly_negative": {"threshold": 0.8, "count": 2, "pct": 22.2, "ids": ["t3_a", "t3_b"]},
    "languages": {"en": 9, "de": 2, "es": 1},
    "model_versions": {"emotion": "emotion-v1", "sentiment": "sentiment-v1"},
    "source": "inference",
    "post_source": "jsonl",
    "time": 1.25,
    "model_version": "emotion-v1",
}


def test_both_breakdowns_languages_and_urgent_posts_are_shown() -> None:
    text = "\n".join(format_analysis(ANSWER))
    assert "emotion-v1" in text and "sentiment-v1" in text
    assert text.index("joy") < text.index("anger")  # largest share first
    assert "negative" in text and "55.6%" in text
    assert "2 posts, 22.2%: t3_a, t3_b" in text
    assert "languages: en 9, de 2, es 1" in text
    assert "3 left out" in text


def test_an_emotion_only_answer_has_no_sentiment_section() -> None:
    only = {**ANSWER, "sentiment_agg": None, "strongly_negative": None, "excluded": 0}
    text = "\n".join(format_analysis(only))
    assert "sentiment" not in text.split("\n", 1)[1] and "strongly" not in text and "left out" not in text


def test_predict_rejects_an_unknown_task() -> None:
    res = CliRunner().invoke(app, ["predict", "hello", "--task", "polarity"])
    assert res.exit_code == 2 and "emotion or sentiment" in res.output
