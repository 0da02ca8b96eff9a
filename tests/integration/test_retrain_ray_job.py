"""`emotion-monitor retrain` as a Ray job on a real local Ray (its job server): the command a
drift alert submits runs in the job and takes the job-body path (no --local needed), and a
failed job reaches the submitter as exit status 1 with its log. A failing config keeps it
short; tests/train/test_retrain_job.py runs the whole body."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tooling.cli.retrain import submit
from training.retrain import RetrainOptions

pytestmark = pytest.mark.integration


def test_the_retrain_entrypoint_runs_as_a_ray_job(
    ray_session: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not ray_session:
        pytest.skip("this Ray has no dashboard (job server)")
    opts = RetrainOptions(
        config=tmp_path / "no-such-config.yaml", serve_config=tmp_path / "s.yaml", track=False
    )
    # The cluster's image has `emotion-monitor` on PATH; this session's Ray inherited pytest's.
    venv_bin = str(Path(sys.executable).parent)
    env = {"env_vars": {"PATH": f"{venv_bin}:${{PATH}}", "HF_HUB_OFFLINE": "1"}}
    assert submit(ray_session, opts, wait=True, poll_s=0.5, runtime_env=env) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "cannot stream" not in captured.err  # the log came as it was written
    assert "submitted Ray job retrain-" in out and "FAILED" in out
    # The job body ran (in-job detection) and named the bad input; not the "where" refusal.
    assert "cannot read training config" in out and "no-such-config.yaml" in out
    assert "say where it runs" not in out
