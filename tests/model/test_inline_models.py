"""The ingress's copy of the Classifier's models (deployments.inline), without Ray."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from deployments.inline import InlineModels, matches
from serve_app.domain.records import TaskModel
from serve_app.domain.tasks import TASKS
from serve_app.model.batching import run_batch
from serve_app.model.predictor import OnnxPredictor

pytestmark = pytest.mark.model

TEXTS = ["i am so happy today", "this makes me furious"]
EMOTION = TASKS["emotion"].labels


def _spec(model_dir: Path, version: str, max_length: int = 64) -> TaskModel:
    # One task of Classifier.info().
    return TaskModel(version, EMOTION, ("en",), max_length, str(model_dir))


def test_follows_the_classifier_and_answers_like_it(model_dir: Path, tmp_path: Path) -> None:
    classifier = OnnxPredictor(model_dir, threads=1, max_length=64)
    spec = _spec(model_dir, classifier.version)
    rolled = tmp_path / "v2"
    shutil.copytree(model_dir, rolled)

    async def scenario() -> None:
        inline = InlineModels(threads=1)
        assert inline.lookup("emotion", spec) is None  # not here yet: the Classifier answers
        await inline.wait_loading()
        here = inline.lookup("emotion", spec)
        assert here is not None and matches(here, spec)
        (answer,) = run_batch(inline.predictors, [(("emotion",), TEXTS)])
        pred, probs = answer["emotion"]
        assert pred.version == classifier.version
        assert probs == pytest.approx(classifier.probabilities(TEXTS), abs=1e-4)

        # The Classifier rolled to another version: not answered here until that one is loaded.
        new = _spec(rolled, "emotion-v2")
        assert inline.lookup("emotion", new) is None
        await inline.wait_loading()
        assert inline.lookup("emotion", new) is not None
        assert inline.predictors["emotion"].version == "emotion-v2"
        # A different max_length is a different model for our purposes.
        assert inline.lookup("emotion", _spec(rolled, "emotion-v2", max_length=32)) is None
        await inline.wait_loading()
        assert inline.predictors["emotion"].max_length == 32

        # The other head of the same artifact reuses the session already here.
        sentiment = TaskModel("emotion-v2", TASKS["sentiment"].labels, ("en",), 32, str(rolled))
        assert inline.lookup("sentiment", sentiment) is None
        await inline.wait_loading()
        emo, sen = inline.predictors["emotion"], inline.predictors["sentiment"]
        assert sen.session is emo.session and sen.labels == TASKS["sentiment"].labels
        assert matches(sen, sentiment)

    asyncio.run(scenario())


def test_an_artifact_not_on_this_node_is_never_loaded(model_dir: Path, tmp_path: Path) -> None:
    missing = _spec(tmp_path / "elsewhere", "emotion-x")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx graph")

    async def scenario() -> None:
        inline = InlineModels(threads=1)
        for spec in (missing, _spec(broken, "emotion-y")):
            assert inline.lookup("emotion", spec) is None
            await inline.wait_loading()
            assert inline.lookup("emotion", spec) is None
            assert not inline._loading, "a failed artifact must not be retried on every call"
        assert inline.predictors == {}

    asyncio.run(scenario())
