"""Quality and behaviour of the committed INT8 emotion model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from serve_app.predictor import OnnxPredictor
from serve_app.preprocess import normalize_text
from training.evaluate import evaluate_predictor

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> OnnxPredictor:
    return OnnxPredictor(model_dir, threads=2)


def test_emotion_test_split_meets_the_targets(
    predictor: OnnxPredictor, data_root: Path, model_dir: Path
) -> None:
    report, _ = evaluate_predictor(predictor, data_root / "emotion" / "test.jsonl")
    assert report["n"] == 2000
    # Dynamic INT8 takes each activation's scale over the whole model batch, so the served
    # accuracy moves with batch composition: 92.30-92.75 % over batch sizes 1-64 on this
    # split (MODEL_CARD.md). The claim that holds for every batching is the issue's: INT8
    # within 0.5 points of FP32 (92.55 %), and never under the FIELD-NOTES INT8 baseline.
    fp32 = json.loads((model_dir / "model_card.json").read_text())["metrics"]["emotion_test"]["fp32"]
    assert report["accuracy"] >= fp32["accuracy"] - 0.005, (report["accuracy"], fp32["accuracy"])
    assert report["accuracy"] >= 0.92, report["accuracy"]
    assert report["macro_f1"] >= 0.88, report["macro_f1"]


def test_reddit_validation_meets_the_targets(predictor: OnnxPredictor, data_root: Path) -> None:
    report, _ = evaluate_predictor(predictor, data_root / "reddit_emotion" / "validation.jsonl")
    assert report["macro_f1"] >= 0.60, report["macro_f1"]
    worst = min(report["per_class"].items(), key=lambda kv: kv[1]["f1"])
    assert worst[1]["f1"] >= 0.40, worst


def test_model_card_records_both_precisions_and_int8_is_close_to_fp32(model_dir: Path) -> None:
    card = json.loads((model_dir / "model_card.json").read_text())
    test = card["metrics"]["emotion_test"]
    assert abs(test["fp32"]["accuracy"] - test["int8"]["accuracy"]) <= 0.005
    assert card["export"]["torch_vs_onnx_max_abs_diff"] < 1e-4
    assert {"reddit_validation", "emotion_test"} <= set(card["metrics"])


CLEAR = {
    "sadness": ["i feel so lonely and miserable since she left", "I cried all night, I miss my dad so much"],
    "joy": ["i am so happy today, everything went perfectly", "Best day ever! I passed my exam!"],
    "love": ["i love you so much my darling", "I adore my wife, she is the most caring person"],
    "anger": ["i am furious at how rude they were to me", "This is infuriating, I hate these lying idiots"],
    "fear": [
        "i am terrified something bad is going to happen",
        "I'm so scared and anxious about the surgery tomorrow",
    ],
    "surprise": [
        "i was shocked and amazed when i saw the result",
        "Wow, I did not expect that at all, I'm stunned",
    ],
}


@pytest.mark.parametrize(("label", "text"), [(k, t) for k, ts in CLEAR.items() for t in ts])
def test_clear_examples(predictor: OnnxPredictor, label: str, text: str) -> None:
    assert predictor.predict([text])[0].label == label


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Sarah was so rude to me, I am furious", "Mohammed was so rude to me, I am furious"),
        ("i feel so happy that john called me", "i feel so happy that priya called me"),
        ("I miss my grandmother so much", "I miss my grandmother so much."),
        ("i am terrified of the exam tomorrow", "I am terrified of the exam tomorrow!!"),
    ],
)
def test_names_and_punctuation_do_not_change_the_label(predictor: OnnxPredictor, a: str, b: str) -> None:
    pa, pb = predictor.predict([a, b])
    assert pa.label == pb.label


def test_onnx_output_equals_an_independent_predict_path(predictor: OnnxPredictor, model_dir: Path) -> None:
    texts = ["i feel great", "Why would anyone do this?! I'm so angry.", "x " * 400]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=predictor.max_length)
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    temperature = json.loads((model_dir / "labels.json").read_text())["temperature"]
    expected = []
    for t in texts:  # one text at a time: no padding at all
        ids = np.array([tok.encode(normalize_text(t)).ids], dtype=np.int64)
        logits = (
            sess.run(
                None,
                {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
            )[0][0]
            / temperature
        )
        e = np.exp(logits - logits.max())
        expected.append(e / e.sum())
    expected_arr = np.array(expected)
    one_by_one = np.concatenate([predictor.probabilities([t]) for t in texts])
    np.testing.assert_allclose(one_by_one, expected_arr, atol=1e-5)
    # Batched with padding: dynamic INT8 takes each activation's scale over the whole batch,
    # so scores move slightly with the batch-mates; labels must not.
    batched = predictor.probabilities(texts)
    assert (batched.argmax(1) == expected_arr.argmax(1)).all()
    np.testing.assert_allclose(batched, expected_arr, atol=0.02)


def test_cli_predict_matches_the_predictor(predictor: OnnxPredictor, model_dir: Path) -> None:
    text = "i am so happy today"
    out = subprocess.run(
        [sys.executable, "-m", "serve_app.cli", "predict", text, "--model", str(model_dir), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cli = json.loads(out)[0]
    direct = predictor.predict([text])[0]
    assert cli["label"] == direct.label
    assert cli["confidence"] == pytest.approx(direct.confidence, abs=1e-4)
