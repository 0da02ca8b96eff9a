"""`emotion-monitor retrain` before any training: where it runs, its job entrypoint, the
candidate's version name, and that bad input stops it (exit 2, naming what) before an hour
of training. The training itself: tests/train/test_retrain_job.py."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve_app.model.registry import LocalRegistry
from tests.conftest import MODEL_DIR, ROOT
from tooling.cli import app
from tooling.cli.retrain import job_entrypoint
from training.retrain import IN_JOB_DASHBOARD, RAY_JOB_ENV, RetrainOptions, candidate_version, deploy_target

pytestmark = pytest.mark.unit


def test_outside_a_job_it_asks_where_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    res = CliRunner().invoke(app, ["retrain", "--config", "configs/multitask.yaml"])
    assert res.exit_code == 2 and "--address" in res.output and "--local" in res.output
    both = CliRunner().invoke(app, ["retrain", "--local", "--address", "http://127.0.0.1:8265"])
    assert both.exit_code == 2 and "not both" in both.output


def test_the_job_entrypoint_parses_back_to_the_same_options() -> None:
    opts = RetrainOptions(
        config=Path("configs/multi task.yaml"),
        max_steps=3,
        data_root=Path("/data"),
        deploy_address="http://head:8265",
        track=False,
    )
    argv = shlex.split(job_entrypoint(opts))
    assert argv[:2] == ["emotion-monitor", "retrain"] and "--local" not in argv  # in-job detection
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--config"] == "configs/multi task.yaml" and flags["--max-steps"] == "3"
    assert flags["--deploy-address"] == "http://head:8265" and flags["--data-root"] == "/data"
    assert argv[-1] == "--no-track" and "--epochs" not in flags and "--no-deploy" not in argv
    # No deploy address from the submitter: the job must not deploy to a guessed one.
    assert "--no-deploy" in shlex.split(job_entrypoint(RetrainOptions(config=Path("c.yaml"))))


def test_deploy_goes_where_it_is_told_else_to_the_cluster_it_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    assert deploy_target(True, None, None) is None  # a plain local run deploys nowhere
    assert deploy_target(True, None, "http://a:8265") == "http://a:8265"
    assert deploy_target(True, "http://b:8265", "http://a:8265") == "http://b:8265"
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    assert deploy_target(True, None, None) == IN_JOB_DASHBOARD
    assert deploy_target(False, "http://b:8265", None) is None


def test_candidate_versions_are_dated_and_never_reuse_a_name() -> None:
    day = dt.date(2026, 12, 1)
    assert candidate_version("minilm-l6-mt-v4", set(), day, "abc1234") == "minilm-l6-mt-v4-20261201-abc1234"
    taken = {"minilm-l6-mt-v4-20261201", "minilm-l6-mt-v4-20261201-2"}
    assert candidate_version("minilm-l6-mt-v4", taken, day) == "minilm-l6-mt-v4-20261201-3"


def test_a_candidate_push_leaves_latest_alone(tmp_path: Path) -> None:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip("no committed model")
    reg = LocalRegistry(tmp_path / "registry")
    reg.push("emotion", "live", MODEL_DIR)
    reg.push("emotion", "candidate", MODEL_DIR, latest=False)
    assert reg.latest("emotion") == "live" and reg.versions("emotion") == ["candidate", "live"]


@pytest.mark.parametrize(
    ("serve_config", "says"),
    [
        ("missing.yaml", "missing.yaml"),
        ("no_classifier.yaml", "user_config"),
    ],
)
def test_bad_input_stops_the_job_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_config: str, says: str
) -> None:
    (tmp_path / "no_classifier.yaml").write_text("applications:\n  - name: x\n    deployments: []\n")
    monkeypatch.setenv("EMOTION_MONITOR_MODEL__REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # as inside a Ray job: no --local needed
    from serve_app.config.settings import get_settings

    get_settings.cache_clear()
    try:
        args = ["retrain", "--config", str(ROOT / "configs" / "multitask.yaml"), "--no-deploy"]
        args += ["--work-dir", str(tmp_path / "runs")]
        res = CliRunner().invoke(app, [*args, "--serve-config", str(tmp_path / serve_config)])
        bad_cfg = CliRunner().invoke(app, ["retrain", "--config", str(tmp_path / "nope.yaml")])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 2 and says in res.output, res.output
    assert bad_cfg.exit_code == 2 and "nope.yaml" in bad_cfg.output, bad_cfg.output
    assert not (tmp_path / "registry").exists() and not (tmp_path / "runs").exists()
