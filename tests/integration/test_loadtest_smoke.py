"""Locust runs in its own process against the served app for a few seconds: no failures."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tooling.loadtest import run_locust

pytestmark = pytest.mark.integration


def hot_keywords() -> list[str]:
    """The locustfile's HOT list, read without importing it (locust must stay out of here)."""
    tree = ast.parse((ROOT / "loadtest" / "locustfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HOT" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("loadtest/locustfile.py has no HOT list")


def test_locust_mix_runs_without_failures(serve_url: str, tmp_path: Path) -> None:
    # Never import locust here: gevent's monkey-patching deadlocks beside Ray.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is in the dev extra")
    # "Hot" keywords are cache hits by definition: warm them first. Cold, a 250-post analysis
    # with both models can outlast this short run on 2 shared cores, leaving no hot row.
    for keyword in hot_keywords():
        body = {"keyword": keyword, "limit": 250, "source": "jsonl"}
        assert httpx.post(f"{serve_url}/analyze", json=body, timeout=120).status_code == 200
    rows = run_locust(serve_url, users=6, duration_s=8, out_dir=tmp_path, spawn_rate=6)
    total = next(r for r in rows if r["name"] == "all")
    assert total["requests"] > 0
    failures = tmp_path / "locust_failures.csv"
    assert total["failures"] == 0, (rows, failures.read_text() if failures.is_file() else "no failures file")
    names = {r["name"] for r in rows}
    assert {"/predict [1]", "/analyze [hot]"} <= names
    # The app serves both tasks: the sentiment user must have sent traffic, not bowed out.
    assert "/predict [1, sentiment]" in names, names
    assert (tmp_path / "report.html").is_file() and (tmp_path / "locust_stats.csv").is_file()
