"""The Classifier swaps model versions from the registry in place (its plain class, no Ray;
the roll through `serve deploy` is tested on a real cluster in tests/cluster)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.classifier import Classifier
from serve_app.model.batching import ModelVersionError, parse_user_config, run_batch
from serve_app.model.predictor import ModelArtifactError, artifact_digest
from serve_app.model.registry import LocalRegistry, RegistryError, RegistrySpec

pytestmark = pytest.mark.model

TEXTS = ["i am so happy today", "this makes me furious", "i feel so alone tonight"]


def _classifier(model_dir: Path, registry: Path, cache: Path) -> Any:
    cls = Classifier.func_or_class  # type: ignore[attr-defined]
    return cls({"emotion": str(model_dir)}, 1, 64, 32, RegistrySpec(local_dir=str(registry)), str(cache))


def _versioned_copy(model_dir: Path, dest: Path, card_version: str) -> Path:
    shutil.copytree(model_dir, dest)
    card = json.loads((dest / "model_card.json").read_text())
    (dest / "model_card.json").write_text(json.dumps({**card, "version": card_version}))
    return dest


def _classify(clf: Any) -> tuple[str, list[int]]:
    (answer,) = run_batch(clf.predictors, [(("emotion",), TEXTS)])
    pred, probs = answer["emotion"]
    return pred.version, probs.argmax(1).tolist()


def test_versions_swap_in_place_and_answers_say_which(model_dir: Path, tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.push("emotion", "emo-a", model_dir)
    reg.push("emotion", "emo-b", _versioned_copy(model_dir, tmp_path / "b", "card-b"))
    clf = _classifier(model_dir, tmp_path / "reg", tmp_path / "cache")
    assert clf.predictors == {}  # nothing loads before reconfigure() says which version

    assert clf.apply_versions({}) == ["emotion"]
    base_version, base_labels = _classify(clf)
    assert base_version != "emo-a" and clf.info().default.model_dir == str(model_dir)

    assert clf.apply_versions({"emotion": "emo-a"}) == ["emotion"]
    assert _classify(clf) == ("emo-a", base_labels)  # same weights, new name
    assert clf.info().tasks["emotion"].version == "emo-a"

    old = clf.predictors["emotion"]
    clf.apply_versions({"emotion": "latest"})
    assert _classify(clf)[0] == "emo-b"  # the exact version, never "latest"
    assert clf.predictors["emotion"] is not old

    # A version that is not there leaves the serving model alone.
    with pytest.raises(RegistryError, match="emo-zzz"):
        clf.apply_versions({"emotion": "emo-zzz"})
    assert _classify(clf)[0] == "emo-b"
    with pytest.raises(ModelVersionError, match="sentiment"):
        clf.apply_versions({"sentiment": "s1"})

    # The same config again reloads nothing; an empty one goes back to the args' directory.
    same = clf.predictors["emotion"]
    assert clf.apply_versions({"emotion": "emo-b"}) == [] and clf.predictors["emotion"] is same
    clf.apply_versions({})
    assert _classify(clf) == (base_version, base_labels)


def test_a_batch_keeps_the_predictors_it_started_with(model_dir: Path, tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.push("emotion", "emo-a", model_dir)
    reg.push("emotion", "emo-b", model_dir)
    clf = _classifier(model_dir, tmp_path / "reg", tmp_path / "cache")
    clf.apply_versions({"emotion": "emo-a"})
    snapshot = clf.predictors  # what a running batch holds
    clf.apply_versions({"emotion": "emo-b"})
    assert snapshot["emotion"].version == "emo-a" and clf.predictors["emotion"].version == "emo-b"
    out = [a["emotion"] for a in run_batch(snapshot, [(("emotion",), TEXTS[:1]), (("emotion",), TEXTS[1:])])]
    assert [p.version for p, _ in out] == ["emo-a", "emo-a"] and [len(x) for _, x in out] == [1, 2]


def test_both_heads_of_one_artifact_share_a_session_and_one_pass(model_dir: Path, tmp_path: Path) -> None:
    cls = Classifier.func_or_class  # type: ignore[attr-defined]
    clf = cls({"emotion": str(model_dir), "sentiment": str(model_dir)}, 1, 64, 32, None, str(tmp_path))
    clf.apply_versions({})
    emo, sen = clf.predictors["emotion"], clf.predictors["sentiment"]
    assert emo.session is sen.session and emo.labels != sen.labels
    runs: list[int] = []

    def counting(pred: Any) -> Any:
        real = pred.probabilities_all

        def counted(texts: list[str]) -> dict[str, np.ndarray]:
            runs.append(len(texts))
            return real(texts)

        return counted

    emo.probabilities_all, sen.probabilities_all = counting(emo), counting(sen)
    out = run_batch(clf.predictors, [(("emotion", "sentiment"), TEXTS), (("sentiment",), TEXTS[:1])])
    assert runs == [len(TEXTS) + 1]  # one encoder pass for both calls and both tasks
    assert set(out[0]) == {"emotion", "sentiment"} and set(out[1]) == {"sentiment"}
    assert out[0]["emotion"][1].shape == (len(TEXTS), 7) and out[1]["sentiment"][1].shape == (1, 3)


def test_one_artifact_pushed_under_each_task_name_is_one_session(model_dir: Path, tmp_path: Path) -> None:
    """The registry is keyed by task, so a multi-task artifact is pushed twice; serving it
    from both names (or one from the registry, one from the args) must not load it twice
    nor run the encoder twice per analysis."""
    reg = LocalRegistry(tmp_path / "reg")
    reg.push("emotion", "mt-a", model_dir)
    reg.push("sentiment", "mt-a", model_dir)
    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(model_dir, recalibrated)
    labels = json.loads((recalibrated / "labels.json").read_text())
    labels["heads"]["sentiment"]["temperature"] = 2.0
    (recalibrated / "labels.json").write_text(json.dumps(labels))
    reg.push("sentiment", "mt-b", recalibrated)
    cls = Classifier.func_or_class  # type: ignore[attr-defined]
    spec = RegistrySpec(local_dir=str(tmp_path / "reg"))
    clf = cls({"emotion": str(model_dir), "sentiment": str(model_dir)}, 1, 64, 32, spec, str(tmp_path))
    clf.apply_versions({})
    args_session = clf.predictors["emotion"].session

    # One task from the registry, the other still from the args' directory: same bytes.
    assert clf.apply_versions({"emotion": "mt-a"}) == ["emotion"]
    emo, sen = clf.predictors["emotion"], clf.predictors["sentiment"]
    assert emo.session is sen.session is args_session
    assert emo.version == "mt-a" and sen.version != "mt-a"  # each answer still names its own
    assert emo.model_dir == reg.path("emotion", "mt-a") and sen.model_dir == model_dir

    # Both from the registry: still one session, and one encoder pass for both tasks.
    assert clf.apply_versions({"emotion": "mt-a", "sentiment": "mt-a"}) == ["sentiment"]
    emo, sen = clf.predictors["emotion"], clf.predictors["sentiment"]
    assert emo.session is sen.session and (emo.version, sen.version) == ("mt-a", "mt-a")
    (answer,) = run_batch(clf.predictors, [(("emotion", "sentiment"), TEXTS)])
    assert answer["emotion"][0].version == answer["sentiment"][0].version == "mt-a"
    assert clf.apply_versions({"emotion": "mt-a", "sentiment": "mt-a"}) == []  # nothing reloads

    # Different answer files (another temperature) are another artifact: a session of its own,
    # which answers with its own calibration.
    clf.apply_versions({"emotion": "mt-a", "sentiment": "mt-b"})
    sen_b = clf.predictors["sentiment"]
    assert sen_b.session is not clf.predictors["emotion"].session and sen_b.head.temperature == 2.0
    with pytest.raises(ModelArtifactError, match="not a copy"):
        clf.predictors["emotion"].copy_at(recalibrated, artifact_digest(recalibrated), "sentiment")


@pytest.mark.unit
def test_user_config_is_checked() -> None:
    assert parse_user_config({}) == (32, 0.005, {})
    assert parse_user_config({"max_batch_size": 8, "model_versions": {"emotion": "v2", "sentiment": ""}}) == (
        8,
        0.005,
        {"emotion": "v2"},
    )
    with pytest.raises(ModelVersionError, match="unknown Classifier user_config keys"):
        parse_user_config({"max_batch": 8})
    with pytest.raises(ModelVersionError, match="must map a task"):
        parse_user_config({"model_versions": "v2"})


def test_a_task_can_be_served_by_an_artifact_of_its_own(model_dir: Path, tmp_path: Path) -> None:
    from deployments.app import AppArgs, model_dirs
    from serve_app.config.settings import ModelSettings, Settings

    own = _versioned_copy(model_dir, tmp_path / "sentiment-only", "sen-x")
    settings = Settings(model={"dir": model_dir}, stores={"embedded": False}, background=False)
    shared = model_dirs(AppArgs(), settings)
    assert shared == {"emotion": str(model_dir.resolve()), "sentiment": str(model_dir.resolve())}
    # From the settings (EMOTION_MONITOR_MODEL__TASK_DIRS), and the app args over them.
    split = Settings(model={"dir": model_dir, "task_dirs": {"sentiment": own}}, stores={"embedded": False})
    assert model_dirs(AppArgs(), split)["sentiment"] == str(own.resolve())
    args = AppArgs(model=ModelSettings(task_dirs={"sentiment": model_dir}))
    assert model_dirs(args, split)["sentiment"] == str(model_dir.resolve())
    # A task asked for whose artifact is not there is refused, naming the directory.
    missing = tmp_path / "nothing"
    with pytest.raises(ModelArtifactError, match="nothing"):
        model_dirs(AppArgs(tasks=["emotion"], model=ModelSettings(task_dirs={"emotion": missing})), settings)
