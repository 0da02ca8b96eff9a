"""Every metric the Grafana dashboard queries is exported by the running app."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import redis

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "cluster" / "grafana" / "dashboards" / "emotion-monitor.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "clamp_min", "max", "le", "bool"}


def dashboard_metrics() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    names = set()
    for e in exprs:
        e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
        e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
            if word.startswith("ray_") and word not in PROMQL_WORDS:
                names.add(word)
    return names


def scrape() -> str:
    import ray

    node = ray._private.worker._global_node
    return httpx.get(f"http://127.0.0.1:{node.metrics_export_port}/metrics", timeout=10).text


def exported_names(text: str) -> set[str]:
    return {ln.split("{", 1)[0].split(" ", 1)[0] for ln in text.splitlines() if ln and not ln.startswith("#")}


def test_dashboard_queries_only_exported_metrics(serve_url: str, clean_cache: redis.Redis) -> None:
    wanted = dashboard_metrics()
    assert len(wanted) >= 10, wanted
    with httpx.Client(base_url=serve_url, timeout=120) as c:
        body = {"keyword": "game", "limit": 20, "source": "jsonl"}
        assert c.post("/analyze", json=body).status_code == 200  # miss: fetch, classify, sync record
        assert c.post("/analyze", json=body).status_code == 200  # hit
        assert c.post("/predict", json={"text": "I love it"}).status_code == 200
        c.post("/predict", json={"text": "I hate it", "task": "sentiment"})
        assert c.post("/nope", json={}).status_code == 404  # an error for the error-rate panel
    # Warmer and sync counters only appear once incremented; their gauges/counters are
    # created on the first pass. Force both so the dashboard's every series exists.
    import ray

    from deployments.actor_loops import get_actor, sync_actor_name

    ray.get(get_actor(sync_actor_name()).sync_now.remote(), timeout=60)
    missing: set[str] = set()
    deadline = time.monotonic() + 60  # Ray's agent exports every few seconds
    while time.monotonic() < deadline:
        have = exported_names(scrape())
        missing = {m for m in wanted if not any(h == m or h.startswith(m + "_") for h in have)}
        optional = {"ray_emotion_monitor_warmer_refreshes_total", "ray_emotion_monitor_shed_total"}
        # The drift gauges are set by the drift watch's first check (every 5 minutes).
        drift = ("drift_statistic", "drift_detected", "estimated_accuracy")
        optional |= {f"ray_emotion_monitor_{m}" for m in drift}
        if not (missing - optional):
            break
        time.sleep(3)
    # The warmer is off in the test app and nothing was shed: those two series are created by
    # their first increment; every other series must be there.
    assert not (missing - optional), sorted(missing)
    # Recorded inside replicas, our series carry Serve's deployment/replica/application tags.
    # (Other test apps of this session record under their own application names.)
    lines = [ln for ln in scrape().splitlines() if ln.startswith("ray_emotion_monitor_predictions_total{")]
    assert lines and all("application=" in ln and "replica=" in ln for ln in lines), lines
    assert any('application="emotion-monitor"' in ln and 'deployment="Classifier"' in ln for ln in lines), (
        lines
    )


def test_request_id_follows_a_request_through_every_deployment(
    serve_url: str, clean_cache: redis.Redis
) -> None:
    import uuid
    from pathlib import Path

    import ray

    rid = f"trace-{uuid.uuid4().hex[:12]}"
    r = httpx.post(
        serve_url + "/analyze",
        json={"keyword": "music", "limit": 15, "source": "jsonl", "return_plot": True},
        headers={"X-Request-ID": rid},
        timeout=120,
    )
    assert r.status_code == 200 and r.headers.get("x-request-id") == rid
    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"

    def hops() -> set[str]:
        seen = set()
        for f in logs.glob("replica_*.log"):
            for line in f.read_text(errors="replace").splitlines():
                if rid in line and line.startswith("{"):
                    rec = json.loads(line)
                    if rec.get("request_id") == rid:
                        seen.add(str(rec.get("deployment")).rsplit("_", 1)[-1])  # "<app>_<name>"
        return seen

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(hops()) < 4:
        time.sleep(1)
    assert {"Ingress", "Fetcher", "Classifier", "Aggregator"} <= hops(), hops()
