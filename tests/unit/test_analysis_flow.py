"""The analysis flow's pure steps (serve_app.flow.analysis), without Ray or Redis."""

from __future__ import annotations

import pytest

from serve_app.counting.quantify import Counting
from serve_app.domain.posts import FetchResult, Post
from serve_app.domain.question import Question
from serve_app.domain.records import PredictionRow, ServedModels, TaskModel
from serve_app.domain.tasks import TASKS
from serve_app.flow.aggregate import summarize
from serve_app.flow.analysis import build_analysis, select_posts

pytestmark = pytest.mark.unit


def _post(i: int, lang: str) -> Post:
    return Post(f"p{i}", f"title {i}", f"body {i}", "s", 1.7e9, 1, "", lang=lang, lang_confidence=0.9)


def _models(emotion_langs: tuple[str, ...], sentiment_langs: tuple[str, ...]) -> ServedModels:
    def model(task: str, langs: tuple[str, ...]) -> TaskModel:
        return TaskModel(f"{task}-v1", TASKS[task].labels, langs, 128, "/m")

    return ServedModels(
        "emotion",
        {"emotion": model("emotion", emotion_langs), "sentiment": model("sentiment", sentiment_langs)},
    )


def _row(task: str, label: str, confidence: float = 0.9) -> PredictionRow:
    labels = TASKS[task].labels
    rest = (1 - confidence) / (len(labels) - 1)
    return {
        "label": label,
        "confidence": confidence,
        "scores": {x: confidence if x == label else rest for x in labels},
    }


FETCHED = FetchResult(
    [_post(0, "en"), _post(1, "es"), _post(2, "und"), _post(3, "de")], excluded={"nsfw": 2, "duplicate": 0}
)


def test_posts_in_a_language_some_asked_model_cannot_read_are_left_out() -> None:
    models = _models(("en",), ("en", "es", "de"))
    both = Question("kw", 10, "jsonl", ("emotion", "sentiment"), 0.8)
    sel = select_posts(FETCHED, models, both)
    assert sel.keep == [0, 2]  # English and undetermined
    assert sel.texts[0].startswith("title 0") and len(sel.texts) == 2
    assert sel.excluded == {"language": 2, "nsfw": 2}  # zero counts dropped
    # Sentiment alone reads Spanish and German too.
    assert select_posts(FETCHED, models, Question("kw", 10, "jsonl", ("sentiment",), 0.8)).keep == [
        0,
        1,
        2,
        3,
    ]
    # Asked for: every language.
    everything = Question("kw", 10, "jsonl", ("emotion",), 0.8, include_other_languages=True)
    assert select_posts(FETCHED, models, everything).keep == [0, 1, 2, 3]


def test_the_answer_lists_confident_posts_of_the_triage_label_only() -> None:
    models = _models(("en",), ("en",))
    q = Question("kw", 10, "jsonl", ("emotion", "sentiment"), 0.8)
    sel = select_posts(FETCHED, models, q)
    preds = {
        "emotion": [_row("emotion", "anger"), _row("emotion", "neutral")],
        "sentiment": [_row("sentiment", "negative", 0.95), _row("sentiment", "negative", 0.6)],
    }
    counting = {t: Counting() for t in preds}
    summary = summarize("kw", preds, False, counting)
    versions = models.versions(q.tasks)
    analysis = build_analysis(q, FETCHED, sel, summary, preds, counting, versions, newly=2).model_dump()
    assert analysis["strongly_negative"] == {"threshold": 0.8, "count": 1, "pct": 50.0, "ids": ["p0"]}
    assert [r["pct"] for r in analysis["agg"] if r["label"] in ("anger", "neutral")] == [50.0, 50.0]
    assert analysis["emotional_agg"] is not None and analysis["sentiment_agg"] is not None
    assert analysis["count"] == 4 and analysis["scored"] == 2 and analysis["excluded"] == 2
    assert analysis["languages"] == {"en": 1, "es": 1, "und": 1, "de": 1}
    assert analysis["model_version"] == "emotion-v1" and analysis["breakdown_methods"] == {
        "emotion": "cc",
        "sentiment": "cc",
    }
    # Without the triage task there is no list.
    emotion_only = Question("kw", 10, "jsonl", ("emotion",), 0.8)
    preds1 = {"emotion": preds["emotion"]}
    summary1 = summarize("kw", preds1, False, {})
    one = build_analysis(emotion_only, FETCHED, sel, summary1, preds1, {}, {"emotion": "emotion-v1"}, 0)
    assert one.strongly_negative is None and one.model_dump()["sentiment_agg"] is None
