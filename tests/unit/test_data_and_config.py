from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from serve_app.domain.labels import EMOTION_LABELS
from serve_app.domain.tasks import TASKS
from training.batches import length_grouped_batches, mix_epoch
from training.config import ConfigError, load_config
from training.data import NO_LABEL, DataError, file_sha256, join_tasks, label_counts, read_jsonl
from training.train import class_weights

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_read_jsonl_maps_names_and_ids(tmp_path: Path) -> None:
    f = write(tmp_path / "d.jsonl", [{"text": "a", "label": "joy"}, {"text": "b", "label": 4}])
    exs = read_jsonl(f, EMOTION_LABELS)
    assert [(e.text, e.label) for e in exs] == [("a", 1), ("b", 4)]
    assert label_counts(exs, EMOTION_LABELS)["fear"] == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"text": "a"}], "expected a JSON object"),
        ([{"text": "a", "label": "bliss"}], "not one of"),
        ([{"text": 3, "label": "joy"}], "'text' must be a string"),
        (["not an object"], "expected a JSON object"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path: Path, rows: list[object], message: str) -> None:
    f = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        read_jsonl(f, EMOTION_LABELS)
    assert "bad.jsonl:1" in str(err.value)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="EMOTION_MONITOR_MODEL__DATA_ROOT"):
        read_jsonl(tmp_path / "nope.jsonl", EMOTION_LABELS)


def test_sha256_is_stable(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_committed_configs_load_with_the_registry_labels_and_overrides_apply() -> None:
    cfg = load_config(ROOT / "configs" / "multitask.yaml", {"epochs": 1, "max_steps": None})
    assert cfg.tasks["emotion"].labels == list(EMOTION_LABELS)
    assert cfg.tasks["sentiment"].labels == list(TASKS["sentiment"].labels)
    assert cfg.hparams.epochs == 1
    assert {s.name for s in cfg.train} == {"carer", "reddit", "tweeteval"}
    assert set(cfg.validation_sets()) == {"emotion", "reddit_emotion7", "tweeteval", "reddit_sentiment"}
    for name in ("emotion.yaml", "sentiment.yaml", "sentiment_multi.yaml"):
        single = load_config(ROOT / "configs" / name)
        for task, tc in single.tasks.items():
            assert tc.labels == list(TASKS[task].labels), name


def test_a_source_with_files_for_two_tasks_joins_them_on_id(tmp_path: Path) -> None:
    emo = read_jsonl(
        write(
            tmp_path / "e.jsonl",
            [{"text": "ugh", "label": "anger", "id": "c1"}, {"text": "wow", "label": "surprise", "id": "c2"}],
        ),
        EMOTION_LABELS,
    )
    sen = read_jsonl(
        write(
            tmp_path / "s.jsonl",
            [
                {"text": "ugh", "label": "negative", "id": "c1"},
                {"text": "yay", "label": "positive", "id": "c3"},
            ],
        ),
        TASKS["sentiment"].labels,
    )
    joined = {
        ex.text: ex.targets
        for ex in join_tasks({"emotion": emo, "sentiment": sen}, ["emotion", "sentiment"], "r")
    }
    assert joined == {"ugh": (3, 0), "wow": (5, NO_LABEL), "yay": (NO_LABEL, 2)}


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    text = (ROOT / "configs" / "multitask.yaml").read_text()
    bad = text.replace(
        "paths: {sentiment: sentiment_en/train.jsonl}", "paths: {stance: sentiment_en/train.jsonl}"
    )
    (tmp_path / "c.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="stance"):
        load_config(tmp_path / "c.yaml")
    dup = text.replace(
        "reddit_sentiment: reddit_sentiment/validation.jsonl", "emotion: reddit_sentiment/validation.jsonl"
    )
    (tmp_path / "d.yaml").write_text(dup)
    with pytest.raises(ConfigError, match="unique"):
        load_config(tmp_path / "d.yaml")


def test_bad_config_values_are_rejected(tmp_path: Path) -> None:
    text = (ROOT / "configs" / "emotion.yaml").read_text().replace("pooling: mean", "pooling: max")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match="pooling"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        load_config(ROOT / "configs" / "emotion.yaml", {"learning_rate": 1.0})


def test_mix_epoch_repeats_and_subsamples() -> None:
    rng = random.Random(0)
    mixed = mix_epoch({"a": [1, 2, 3, 4], "b": [10, 20]}, {"a": 0.5, "b": 2.0}, rng)
    assert sorted(x for x in mixed if x >= 10) == [10, 10, 20, 20]
    assert len([x for x in mixed if x < 10]) == 2


def test_length_grouped_batches_cover_every_index_once_and_group_lengths() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 32, rng, group=50)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spread) / len(spread) < 15  # random batches would spread ~100 tokens


def test_class_weights_favour_rare_classes_and_keep_mean_one() -> None:
    labels = [0] * 90 + [1] * 10
    w = class_weights(labels, 2, "sqrt_inverse")
    assert w is not None
    assert float(w[1]) > float(w[0])
    assert (float(w[0]) * 90 + float(w[1]) * 10) / 100 == pytest.approx(1.0)
    assert class_weights(labels, 2, "none") is None
