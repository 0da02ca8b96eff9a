"""Schemathesis against the service's own OpenAPI schema: no 5xx, responses match the schema.

It runs as its own process (its CLI), against the reliability app over HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import Report

pytestmark = pytest.mark.reliability

MAX_EXAMPLES = int(os.environ.get("EMOTION_MONITOR_FUZZ_EXAMPLES", "30"))


def test_generated_requests_get_no_5xx_and_match_the_schema(
    rel_url: str, tmp_path: Path, report: Report
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is in the dev extra (`pip install -e .[dev]`)")
    schema = httpx.get(rel_url + "/openapi.json", timeout=30)
    assert schema.status_code == 200
    # The issue-27 routes are in the schema, so every phase below generates requests for them.
    assert {"/compare", "/analyses/{analysis_id}/posts"} <= set(schema.json()["paths"])
    (tmp_path / "openapi.json").write_text(schema.text)
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            st, "run", str(tmp_path / "openapi.json"),
            "--url", rel_url,
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples", str(MAX_EXAMPLES),
            "--phases", "examples,coverage,fuzzing",
            "--workers", "2",
            "--request-timeout", "60",
            "--seed", "20261122",
            "--suppress-health-check", "all",
            "--report", "junit", "--report-junit-path", str(junit),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    tail = out[-6000:]
    summary = next((ln.strip() for ln in reversed(out.splitlines()) if "passed" in ln or "failed" in ln), "")
    report.add(
        "input: Schemathesis-generated requests (every route)",
        f"{MAX_EXAMPLES} examples per operation + coverage phase",
        0,
        None,
        None,
        None,
        f"exit {proc.returncode}: {summary[:120]}",
    )
    assert proc.returncode == 0, tail
