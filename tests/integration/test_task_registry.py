"""Adding a task touches its declaration in serve_app/domain/tasks.py and nothing else.

The service's packages are copied, a throwaway third task ("toxicity") is added to the copy's
registry, and a fresh interpreter that imports the copy checks every place a task reaches:
request validation, the response's fields, aggregation and the chart, the cache key, spike
rules, the artifact head check, and the history record down to PostgreSQL rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANCHOR = '            triage_label="negative",\n            alert_label="negative",\n        ),\n'
THIRD_TASK = """        TaskSpec(
            name="toxicity",
            labels=("ok", "toxic"),
            title="Toxicity",
            colours={"ok": "#2CA02C", "toxic": "#000000"},
            description="toxic or not",
            alert_label="toxic",
        ),
"""

PROBE = Path(__file__).with_name("task_probe.py")


def test_a_third_task_needs_only_its_declaration(
    tmp_path: Path, clean_history: tuple[str, redis.Redis]
) -> None:
    dsn, _ = clean_history
    for pkg in ("serve_app", "deployments"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    tasks_py = tmp_path / "serve_app" / "domain" / "tasks.py"
    source = tasks_py.read_text()
    assert source.count(ANCHOR) == 1, "the registry's last declaration moved: update ANCHOR"
    tasks_py.write_text(source.replace(ANCHOR, ANCHOR + THIRD_TASK))

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(PROBE), dsn], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["package"].startswith(str(tmp_path))  # the copy ran, not the repository
    assert out["tasks"] == ["emotion", "sentiment", "toxicity"]
    assert out["request_tasks"] == ["toxicity"] and out["predict_task"] == "toxicity"
    assert out["bogus_refused"]
    assert out["response_fields"] == ["agg", "emotional_agg", "sentiment_agg", "toxicity_agg"]
    assert out["breakdown"] == {"ok": 75.0, "toxic": 25.0}
    assert out["chart_width"] == 1500  # emotion and toxicity panels
    assert out["answer_field"] == ["ok", "toxic"]
    assert out["key_names_task"]
    assert out["predictions"] == {"emotion": 4, "toxicity": 4}
    assert out["aggregates"] == {"ok": 75.0, "toxic": 25.0}
    assert out["versions"] == {"emotion": "emo-1", "toxicity": "tox-1"}
    assert ["toxicity", "toxic"] in out["spike_rules"]
