from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from pydantic import ValidationError

from serve_app.counting.quantify import Counting
from serve_app.domain.labels import EMOTION_LABELS
from serve_app.domain.schemas import AnalyzeRequest, PredictRequest
from serve_app.domain.tasks import TASKS
from serve_app.flow.aggregate import aggregate, render_chart, round_to_total
from serve_app.model.batching import probs_to_rows, replica_threads, split_back
from serve_app.stores.cache import cache_key

pytestmark = pytest.mark.unit


EMOTION = TASKS["emotion"]


def pred(label: str, conf: float, labels: tuple[str, ...] = EMOTION_LABELS) -> dict[str, object]:
    """A prediction row: `conf` on `label`, the rest spread evenly over the other labels."""
    rest = (1 - conf) / (len(labels) - 1)
    return {"label": label, "confidence": conf, "scores": {x: conf if x == label else rest for x in labels}}


def test_counted_breakdown_covers_all_labels_and_sums_to_100() -> None:
    preds = [pred("joy", 0.9), pred("joy", 0.7), pred("anger", 0.6)]
    agg = aggregate(preds, EMOTION, Counting("cc"))["agg"]
    assert [a["label"] for a in agg] == list(EMOTION_LABELS)
    by = {a["label"]: a for a in agg}
    assert by["joy"]["pct"] == pytest.approx(66.67) and by["joy"]["count"] == 2
    assert by["joy"]["avg_score"] == pytest.approx(0.8)
    assert by["anger"]["pct"] == pytest.approx(33.33)
    assert by["fear"] == {
        "label": "fear",
        "pct": 0.0,
        "pct_low": 0.0,
        "pct_high": 0.0,
        "count": 0,
        "avg_score": 0.0,
    }
    assert sum(a["pct"] for a in agg) == pytest.approx(100.0, abs=1e-9)
    for a in agg:
        assert a["pct_low"] <= a["pct"] <= a["pct_high"]


def test_probabilistic_breakdown_averages_scores_and_gives_shares_among_emotional_posts() -> None:
    preds = [pred("neutral", 0.8), pred("neutral", 0.6), pred("anger", 0.5), pred("joy", 0.9)]
    out = aggregate(preds, EMOTION, Counting("pcc"))
    by = {a["label"]: a for a in out["agg"]}
    probs = np.array([[p["scores"][x] for x in EMOTION_LABELS] for p in preds])  # type: ignore[index]
    assert by["neutral"]["pct"] == pytest.approx(100 * probs[:, 6].mean(), abs=0.01)
    assert by["neutral"]["count"] == 2  # count stays the posts whose top label it is
    among = {a["label"]: a for a in out["emotional_agg"]}
    assert "neutral" not in among and sum(a["pct"] for a in among.values()) == pytest.approx(100.0)
    emotional = probs[:, :6].sum()
    assert among["joy"]["pct"] == pytest.approx(100 * probs[:, 1].sum() / emotional, abs=0.01)


@pytest.mark.parametrize("n", [1, 3, 7, 250, 999])
@pytest.mark.parametrize("method", ["cc", "pcc"])
def test_rounding_always_sums_exactly_to_100(n: int, method: str) -> None:
    rng = np.random.default_rng(n)
    labels = rng.choice(EMOTION_LABELS, size=n)
    agg = aggregate([pred(str(x), 0.5) for x in labels], EMOTION, Counting(method))["agg"]
    assert round(sum(a["pct"] for a in agg), 6) == 100.0
    assert round_to_total([1 / 3 * 100] * 3) == [33.34, 33.33, 33.33]


def test_no_posts_gives_zeros_not_a_crash() -> None:
    out = aggregate([], EMOTION, Counting("pcc"))
    assert all(a["pct"] == 0 and a["count"] == 0 for a in out["agg"])
    assert all(a["pct"] == 0 for a in out["emotional_agg"])


def test_chart_is_a_png_of_sensible_size() -> None:
    from PIL import Image

    agg = aggregate([pred("joy", 0.9), pred("neutral", 0.8)], EMOTION)["agg"]
    png = render_chart({"emotion": agg}, "AI", 2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    assert img.size == (750, 440)
    assert base64.b64decode(base64.b64encode(png)) == png


def test_split_back_and_rows() -> None:
    flat = np.arange(12, dtype=np.float32).reshape(6, 2)
    parts = split_back(flat, [1, 0, 5])
    assert [p.shape[0] for p in parts] == [1, 0, 5]
    assert parts[2][0].tolist() == [2.0, 3.0]
    rows = probs_to_rows(np.array([[0.1, 0.9]]), ["a", "b"])
    assert rows[0]["label"] == "b" and rows[0]["confidence"] == pytest.approx(0.9)


def test_replica_threads() -> None:
    assert replica_threads(2.0, None) == 2
    assert replica_threads(0.5, None) == 1
    assert replica_threads(1.0, 3) == 3


def test_cache_key_normalises_keyword_and_separates_everything_else() -> None:
    k = cache_key("  Machine   LEARNING ", 250, "jsonl", "v1")
    assert k == cache_key("machine learning", 250, "jsonl", "v1")
    others = {
        cache_key("machine learning", 251, "jsonl", "v1"),
        cache_key("machine learning", 250, "reddit", "v1"),
        cache_key("machine learning", 250, "jsonl", "v2"),
        cache_key("machine learning", 250, "jsonl", "v1", "de"),
    }
    assert k not in others and len(others) == 4
    # Keys are hashes: no user text (or Redis protocol characters) ever reaches a key.
    assert "\r\n" not in cache_key("a\r\nFLUSHALL\r\n", 1, "jsonl", "v1")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"keyword": ""}, "at least 1 character"),
        ({"keyword": "   "}, "whitespace"),
        ({"keyword": "x" * 101}, "at most 100"),
        ({"keyword": "?!"}, "letter or digit"),
        ({"keyword": "ai", "limit": 0}, "greater than or equal to 1"),
        ({"keyword": "ai", "limit": 1001}, "less than or equal to 1000"),
        ({"keyword": "ai", "limit": "abc"}, "valid integer"),
        ({"keyword": "ai", "source": "twitter"}, "'reddit', 'jsonl' or 'replay'"),
        ({"keyword": 5}, "valid string"),
    ],
)
def test_bad_analyze_requests_say_what_is_wrong(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        AnalyzeRequest.model_validate(body)


def test_reference_client_payloads_validate() -> None:
    a = AnalyzeRequest.model_validate({"keyword": "AI", "limit": 500, "return_plot": True})
    assert (a.keyword, a.limit, a.return_plot, a.lang) == ("AI", 500, True, "en")
    b = AnalyzeRequest.model_validate({"keyword": "AI", "limit": 250, "lang": "en"})
    assert b.source is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "exactly one"),
        ({"text": "a", "texts": ["b"]}, "exactly one"),
        ({"texts": []}, "at least 1 item"),
        ({"texts": ["a"] * 257}, "at most 256"),
        ({"text": "x" * 20_001}, "at most 20000"),
        ({"texts": ["ok", "x" * 20_001]}, r"texts\[1\]"),
        ({"text": 5}, "valid string"),
        ({"txt": "typo"}, "Extra inputs"),
        ({"text": ""}, "empty or only whitespace"),
        ({"text": " \n\t "}, "empty or only whitespace"),
        ({"texts": ["fine", "   "]}, r"texts\[1\] is empty"),
    ],
)
def test_bad_predict_requests_say_what_is_wrong(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PredictRequest.model_validate(body)


def test_the_task_name_type_is_the_registry() -> None:
    """Request schemas and app args validate task names with `TaskName`: it must list exactly
    the registry's tasks, in order, so a task added to TASKS is accepted everywhere."""
    from typing import get_args

    from serve_app.domain.schemas import PredictRequest
    from serve_app.domain.tasks import TASK_NAMES, TaskName

    assert get_args(TaskName) == TASK_NAMES
    schema = PredictRequest.model_json_schema()
    assert tuple(schema["properties"]["task"]["enum"]) == TASK_NAMES
