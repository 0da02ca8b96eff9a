"""Quality of the committed INT8 sentiment model on TweetEval's test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.predictor import OnnxPredictor
from tests.conftest import ROOT
from training.evaluate import evaluate_predictor

pytestmark = pytest.mark.model

SENTIMENT_DIR = ROOT / "models" / "sentiment"


@pytest.fixture(scope="module")
def sentiment() -> OnnxPredictor:
    if not (SENTIMENT_DIR / "model.onnx").is_file():
        pytest.skip(f"no committed sentiment model at {SENTIMENT_DIR}")
    return OnnxPredictor(SENTIMENT_DIR, threads=2)


def test_tweeteval_test_macro_recall_meets_the_target(sentiment: OnnxPredictor, data_root: Path) -> None:
    report, _ = evaluate_predictor(sentiment, data_root / "sentiment_en" / "test.jsonl")
    assert report["n"] == 12_284
    assert report["macro_recall"] >= 0.68, report["macro_recall"]
    # Inverse class weights aim at TweetEval's balanced recall, and its test split has twice the
    # negatives of train: v1 recalls negative 0.89, positive 0.72, neutral 0.48 (MODEL_CARD.md).
    # The floor guards against a collapsed class (chance is 0.33), not the trade-off itself.
    assert min(c["recall"] for c in report["per_class"].values()) >= 0.4, report["per_class"]


def test_card_has_fp32_beside_int8_and_they_agree(sentiment: OnnxPredictor) -> None:
    card = json.loads((SENTIMENT_DIR / "model_card.json").read_text())
    test = card["metrics"]["tweeteval_test"]
    assert abs(test["fp32"]["macro_recall"] - test["int8"]["macro_recall"]) <= 0.01
    assert card["labels"] == ["negative", "neutral", "positive"] and card["task"] == "sentiment"


def test_clear_polarity(sentiment: OnnxPredictor) -> None:
    texts = {
        "negative": ["this update is a disaster, nothing works and support ignores us", "worst service ever"],
        "positive": [
            "absolutely love the new release, great job team!",
            "what a wonderful day, thank you all",
        ],
        "neutral": ["the meeting is moved to 3pm on thursday", "version 2.4 was released on the 5th"],
    }
    for label, xs in texts.items():
        assert [p.label for p in sentiment.predict(xs)] == [label] * len(xs), label
