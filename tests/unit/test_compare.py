"""/compare's statistics on constructed inputs whose truth is known: the shares come from
the Aggregator's own `aggregate` (served counting, bootstrap intervals) over posts built
with exact label counts, or drawn from known mixes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from serve_app.counting.polarity import net_from_counts, net_from_shares
from serve_app.counting.quantify import Counting
from serve_app.domain.records import PredictionRow
from serve_app.domain.tasks import TASKS
from serve_app.flow.aggregate import aggregate
from serve_app.flow.compare import (
    CompareRequest,
    holm,
    net_differences,
    share_differences,
    share_se,
    z_test,
)

pytestmark = pytest.mark.unit

EMOTION = TASKS["emotion"]


def posts_with(counts: dict[str, int], confidence: float = 0.8) -> list[PredictionRow]:
    """Posts whose top label is exactly as counted (the rest of each post's probability is
    spread evenly over the other labels)."""
    labels = EMOTION.labels
    rest = (1 - confidence) / (len(labels) - 1)
    out: list[PredictionRow] = []
    for lab, n in counts.items():
        scores = {other: (confidence if other == lab else rest) for other in labels}
        out += [{"label": lab, "confidence": confidence, "scores": scores}] * n
    return out


def rows(preds: list[PredictionRow], method: str = "cc") -> list[dict[str, object]]:
    return [dict(r) for r in aggregate(preds, EMOTION, Counting(method))["agg"]]


def by_label(diffs: list) -> dict[str, object]:
    return {d.label: d for d in diffs}


# 400 posts each. "joy" differs strongly (40 % vs 16 %); every other label differs by the
# 4 points the shares must give back, which 400 posts per keyword cannot tell from chance.
A = {"joy": 160, "neutral": 40, "sadness": 40, "anger": 40, "love": 40, "fear": 40, "surprise": 40}
B = {"joy": 64, "neutral": 56, "sadness": 56, "anger": 56, "love": 56, "fear": 56, "surprise": 56}


@pytest.mark.parametrize("method", ["cc", "pcc"])
def test_a_strong_difference_in_one_label_is_significant_there_and_nowhere_else(method: str) -> None:
    shares = [rows(posts_with(A), method), rows(posts_with(B), method)]
    diffs = by_label(share_differences(["a", "b"], shares, [400, 400]))
    joy = diffs["joy"]
    assert joy.significant and joy.p_holm < 1e-6
    # cc counts top labels: 40 - 16 points. pcc averages probabilities: each post gives its
    # label 0.8 and every other label 0.2 / 6, so the gap shrinks by (0.8 - 0.2 / 6).
    expected = 24.0 if method == "cc" else 24.0 * (0.8 - 0.2 / 6)
    assert joy.diff == pytest.approx(expected, abs=0.02)
    assert joy.low < joy.diff < joy.high and joy.low > 0  # the interval excludes "no difference"
    for lab in set(EMOTION.labels) - {"joy"}:
        assert not diffs[lab].significant, (lab, diffs[lab])
        assert diffs[lab].diff < 0 and diffs[lab].low < 0 < diffs[lab].high


def test_identical_keywords_show_no_difference() -> None:
    same = rows(posts_with(A))
    diffs = share_differences(["a", "b"], [same, same], [400, 400])
    assert all(d.diff == 0 and d.p_value == 1.0 and not d.significant for d in diffs)


def test_three_keywords_compare_every_pair_and_correct_for_all_of_them() -> None:
    c = dict(A)
    diffs = share_differences(["a", "b", "c"], [rows(posts_with(x)) for x in (A, B, c)], [400, 400, 400])
    pairs = {(d.keyword_a, d.keyword_b) for d in diffs}
    assert pairs == {("a", "b"), ("a", "c"), ("b", "c")}
    assert len(diffs) == 3 * len(EMOTION.labels)
    sig = {(d.keyword_a, d.keyword_b, d.label) for d in diffs if d.significant}
    assert sig == {("a", "b", "joy"), ("b", "c", "joy")}
    # Holm over 21 tests: each adjusted p is at least the raw one.
    assert all(d.p_holm >= d.p_value for d in diffs)


def _draw(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[PredictionRow]:
    labels = list(mix)
    drawn = rng.choice(len(labels), size=n, p=np.array(list(mix.values())))
    counts = {lab: int((drawn == i).sum()) for i, lab in enumerate(labels)}
    return posts_with({k: v for k, v in counts.items() if v})


NATURAL = {
    "joy": 0.25, "neutral": 0.35, "sadness": 0.1, "anger": 0.1, "love": 0.08, "fear": 0.07, "surprise": 0.05,
}  # fmt: skip


def test_false_alarms_stay_under_five_percent_when_both_keywords_share_one_mix() -> None:
    """Family-wise error rate under the null: two samples of 200 posts from the same mix."""
    rng = np.random.default_rng(7)
    runs, alarms = 200, 0
    for _ in range(runs):
        a, b = _draw(rng, NATURAL, 200), _draw(rng, NATURAL, 200)
        diffs = share_differences(["a", "b"], [rows(a), rows(b)], [200, 200])
        alarms += any(d.significant for d in diffs)
    assert alarms / runs <= 0.06, alarms


def test_a_twenty_point_difference_is_found_nearly_always() -> None:
    # z is about 20 / 4.2 = 4.8 at 250 posts each; Holm over 7 labels needs about 2.7: the
    # power is about 0.98 (15 points would give about 0.83).
    rng = np.random.default_rng(11)
    shifted = dict(NATURAL, joy=0.45, neutral=0.15)
    found = 0
    for _ in range(50):
        a, b = _draw(rng, NATURAL, 250), _draw(rng, shifted, 250)
        found += by_label(share_differences(["a", "b"], [rows(a), rows(b)], [250, 250]))["joy"].significant
    assert found >= 45, found


def test_holm_matches_hand_computed_values() -> None:
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([]) == []
    assert holm([0.5, 0.5]) == [1.0, 1.0]


def test_a_zero_share_in_a_small_sample_is_not_treated_as_certain() -> None:
    # A bootstrap interval of [0, 0] would make any difference from 0 "significant".
    assert share_se(0.0, 0.0, 0.0, 20) > 3.0
    _, p = z_test(5.0, math.hypot(share_se(0.0, 0.0, 0.0, 20), share_se(5.0, 0.0, 15.0, 20)))
    assert p > 0.05
    assert z_test(0.0, math.inf) == (0.0, 1.0)
    assert share_se(10.0, 5.0, 15.0, 0) == math.inf


def test_net_sentiment_from_counts_and_shares() -> None:
    net = net_from_counts(30, 10)
    assert net is not None and net["value"] == pytest.approx(0.5)
    assert net["low"] < 0.5 < net["high"] and net["low"] >= -1 and net["high"] <= 1
    assert net_from_counts(0, 0) is None
    rows_ = [
        {"label": "negative", "pct": 25.0},
        {"label": "neutral", "pct": 50.0},
        {"label": "positive", "pct": 25.0},
    ]
    assert net_from_shares(rows_, 100) == net_from_counts(25, 25)


def test_net_sentiment_differences_are_tested_per_pair() -> None:
    far = net_differences(["a", "b"], [net_from_counts(300, 100), net_from_counts(100, 300)])
    assert far[0].significant and far[0].diff == pytest.approx(1.0)
    near = net_differences(["a", "b", "c"], [net_from_counts(50, 50), net_from_counts(52, 48), None])
    assert len(near) == 1 and not near[0].significant


@pytest.mark.parametrize(
    "body",
    [
        {"keywords": ["AI", "ai"]},
        {"keywords": ["python"]},
        {"keywords": ["a", "b", "c", "d", "e", "f"]},
        {"keywords": ["python", "   "]},
        {"keywords": "python"},
    ],
)
def test_bad_keywords_are_refused_naming_the_field(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as err:
        CompareRequest.model_validate(body)
    assert all(e["loc"][0] == "keywords" for e in err.value.errors())


def test_compare_takes_every_analyze_option() -> None:
    req = CompareRequest.model_validate(
        {"keywords": ["python", "Java "], "limit": 40, "tasks": ["sentiment"], "negative_threshold": 0.9}
    )
    subs = req.per_keyword()
    assert [s.keyword for s in subs] == ["python", "Java"]
    assert all(s.limit == 40 and s.tasks == ["sentiment"] and s.negative_threshold == 0.9 for s in subs)
    from serve_app.domain.schemas import AnalyzeRequest

    # Every /analyze field but `keyword` is a /compare field too (new options flow in).
    assert set(AnalyzeRequest.model_fields) - {"keyword"} <= set(CompareRequest.model_fields)


def _answer(keyword: str, counts: dict[str, int], sentiment: dict[str, int]) -> object:
    from serve_app.domain.schemas import AnalyzeResponse

    preds = posts_with(counts)
    n = len(preds)
    senti_rows = []
    for lab, k in sentiment.items():
        scores = {other: (0.8 if other == lab else 0.1) for other in TASKS["sentiment"].labels}
        senti_rows += [{"label": lab, "confidence": 0.8, "scores": scores}] * k
    return AnalyzeResponse.model_validate(
        {
            "keyword": keyword, "count": n, "scored": n, "post_source": "jsonl", "model_version": "v",
            "tasks": ["emotion", "sentiment"], "source": "inference", "time": 0.1,
            "agg": rows(preds), **aggregate(senti_rows, TASKS["sentiment"], Counting("cc")),
        }
    )  # fmt: skip


def test_a_comparison_prints_a_table_and_saves_a_chart(tmp_path: object) -> None:
    from pathlib import Path

    from serve_app.flow.compare import compare_answers
    from tooling.cli.compare import format_comparison, save_comparison_chart

    answers = [
        _answer("cats", A, {"positive": 300, "negative": 50, "neutral": 50}),
        _answer("dogs", B, {"positive": 100, "negative": 250, "neutral": 50}),
    ]
    result = compare_answers(["cats", "dogs"], answers, 0.5)  # type: ignore[arg-type]
    sig = {(t, d.label) for t, rows_ in result.differences.items() for d in rows_ if d.significant}
    assert ("emotion", "joy") in sig and ("sentiment", "positive") in sig
    net = result.net_sentiment_differences[0]
    assert net.significant and net.a > 0 > net.b
    data = result.model_dump()
    text = "\n".join(format_comparison(data))
    assert "cats - dogs joy" in text and "net sentiment" in text and "*" in text
    png = Path(str(tmp_path)) / "compare.png"
    save_comparison_chart(data, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_trend_buckets_carry_net_sentiment_from_their_counts() -> None:
    from serve_app.monitoring.trends import buckets_from_rows

    rows_ = [(0.0, "sentiment", "positive", 30), (0.0, "sentiment", "negative", 10),
             (0.0, "sentiment", "neutral", 60), (3600.0, "emotion", "joy", 5)]  # fmt: skip
    first, second = buckets_from_rows(rows_)
    assert first.net_sentiment == net_from_counts(30, 10)
    assert first.net_sentiment is not None and first.net_sentiment["value"] == pytest.approx(0.5)
    assert second.net_sentiment is None  # no sentiment in that bucket


def test_the_answers_own_net_sentiment_is_used_when_given() -> None:
    from serve_app.domain.schemas import NetSentiment
    from serve_app.flow.compare import net_sentiment_of

    answer = _answer("cats", A, {"positive": 300, "negative": 50, "neutral": 50})
    fallback = net_sentiment_of(answer)  # type: ignore[arg-type]
    assert fallback == net_from_counts(300, 50)
    answer.net_sentiment = NetSentiment(value=0.7, low=0.6, high=0.8)  # type: ignore[attr-defined]
    assert net_sentiment_of(answer) == {"value": 0.7, "low": 0.6, "high": 0.8}  # type: ignore[arg-type]
