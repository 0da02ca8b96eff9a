"""Pure pieces of the second task and language awareness: no Ray, no services."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.flow.aggregate import render_chart, strongly_negative
from serve_app.model.batching import group_by_model, split_back
from serve_app.model.language import UNDETERMINED, count_languages, detect, is_supported, readable_languages

pytestmark = pytest.mark.unit


def test_detects_clear_languages_and_leaves_short_text_undetermined() -> None:
    found = detect(
        [
            "I really did not expect the update to break my phone again",
            "Je suis vraiment déçu par cette mise à jour, elle ne marche pas",
            "Das ist wirklich die schlechteste Version, die sie je veröffentlicht haben",
            "ok",
            "   ",
        ]
    )
    assert [d.lang for d in found[:3]] == ["en", "fr", "de"]
    assert found[3].lang == UNDETERMINED and found[4].lang == UNDETERMINED
    assert all(0 <= d.confidence <= 1 for d in found)


def test_threshold_decides_between_language_and_undetermined() -> None:
    text = ["Chrome for Android"]  # short: the detector is unsure
    assert detect(text, min_confidence=0.99)[0].lang == UNDETERMINED
    assert detect(text, min_confidence=0.0)[0].lang != UNDETERMINED


def test_only_confidently_foreign_posts_are_unsupported() -> None:
    assert is_supported("en", ["en"]) and is_supported(UNDETERMINED, ["en"])
    assert not is_supported("es", ["en"]) and is_supported("es", ["en", "es"])
    assert count_languages(["en", "es", "en", "und"]) == {"en": 2, "es": 1, "und": 1}


def test_strongly_negative_counts_confident_negatives_most_confident_first() -> None:
    preds = [
        {"label": "negative", "confidence": 0.81},
        {"label": "negative", "confidence": 0.79},
        {"label": "positive", "confidence": 0.99},
        {"label": "negative", "confidence": 0.97},
    ]
    out = strongly_negative(["a", "b", "c", "d"], preds, 0.8)
    assert out == {"threshold": 0.8, "count": 2, "pct": 50.0, "ids": ["d", "a"]}
    assert strongly_negative([], [], 0.8)["pct"] == 0.0


class _Head:
    """Stands in for a predictor: only its session's identity matters to the grouping."""

    def __init__(self, session: object) -> None:
        self.session = session


def test_batched_calls_are_grouped_per_model_and_split_back_in_order() -> None:
    shared, other = object(), object()
    one_artifact = {"emotion": _Head(shared), "sentiment": _Head(shared)}
    calls = [(("emotion",), ["a"]), (("sentiment",), ["b", "c"]), (("emotion", "sentiment"), ["d", "e"])]
    # Both tasks on one artifact: one group, so the encoder runs once for the whole batch.
    assert group_by_model(one_artifact, calls) == {id(shared): [0, 1, 2]}
    two_artifacts = {"emotion": _Head(shared), "sentiment": _Head(other)}
    assert group_by_model(two_artifacts, calls) == {id(shared): [0, 2], id(other): [1, 2]}
    flat = np.arange(3)[:, None]
    assert [p.ravel().tolist() for p in split_back(flat, [1, 2])] == [[0], [1, 2]]


def test_chart_has_a_panel_per_task() -> None:
    emo = [{"label": "joy", "pct": 100.0, "count": 2, "avg_score": 0.9}]
    sen = [{"label": "negative", "pct": 100.0, "count": 2, "avg_score": 0.8}]
    one, two = (
        render_chart({"emotion": emo}, "kw", 2),
        render_chart({"emotion": emo, "sentiment": sen}, "kw", 2),
    )
    assert one[:8] == two[:8] == b"\x89PNG\r\n\x1a\n"

    def width(png: bytes) -> int:
        return int.from_bytes(png[16:20], "big")

    assert width(two) == 2 * width(one)


def test_a_post_is_scored_only_in_languages_every_requested_model_reads() -> None:
    multi = ["ar", "de", "en", "es", "fr", "hi", "it", "pt"]
    assert readable_languages([["en"], multi]) == {"en"}  # emotion (English) + multilingual sentiment
    assert readable_languages([multi]) == set(multi)  # sentiment alone
    assert not is_supported("de", readable_languages([["en"], multi]))
    assert is_supported(UNDETERMINED, readable_languages([["en"], multi]))
