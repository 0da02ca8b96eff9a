"""Net sentiment in the Aggregator's summary: from the served sentiment shares and the same
bootstrap draws as their intervals (deployments.aggregator, serve_app.counting.quantify)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.counting.quantify import Counting
from serve_app.domain.records import PredictionRow
from serve_app.domain.tasks import TASKS
from serve_app.flow.aggregate import summarize
from training.counting import fit_counting

pytestmark = pytest.mark.unit

SENTIMENT = TASKS["sentiment"].labels


def _rows(probs: np.ndarray, labels: tuple[str, ...]) -> list[PredictionRow]:
    return [
        {
            "label": labels[int(p.argmax())],
            "confidence": float(p.max()),
            "scores": {lab: float(x) for lab, x in zip(labels, p, strict=True)},
        }
        for p in probs
    ]


def _probs(n: int, mix: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=mix)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 2.0
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_summary_carries_net_sentiment_from_the_served_shares() -> None:
    fit_probs = _probs(3000, [0.3, 0.4, 0.3], seed=1)
    fit = fit_counting(fit_probs, fit_probs.argmax(1), "emq", resamples=10)
    preds = {"sentiment": _rows(_probs(250, [0.1, 0.3, 0.6], seed=2), SENTIMENT)}
    summary = summarize("kw", preds, False, {"sentiment": fit})
    net = summary.net_sentiment
    assert net is not None
    rows = {r["label"]: r for r in summary.breakdowns["sentiment_agg"]}
    pos, neg = rows["positive"]["pct"], rows["negative"]["pct"]
    assert net["value"] == pytest.approx((pos - neg) / (pos + neg), abs=2e-3)
    assert -1 <= net["low"] <= net["value"] <= net["high"] <= 1
    assert net["value"] > 0.5 and net["high"] - net["low"] < 0.5
    for r in rows.values():
        assert 0 <= r["pct_low"] <= r["pct"] <= r["pct_high"] <= 100


def test_no_sentiment_no_net_sentiment() -> None:
    labels = TASKS["emotion"].labels
    probs = np.full((5, len(labels)), 1 / len(labels))
    summary = summarize("kw", {"emotion": _rows(probs, labels)}, False, {"emotion": Counting("pcc")})
    assert summary.net_sentiment is None
