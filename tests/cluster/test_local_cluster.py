"""A real multi-node Ray cluster on this machine: a head and two workers, each its own
`ray start` with its own temp dir, ports and resources (tooling.local_cluster).

The app is deployed with `serve deploy`, the front end pinned to the head and one
Classifier replica per worker. Under load: a model version roll through the Classifier's
user_config, then a worker node crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serve_app.model.registry import LocalRegistry
from tests.conftest import DATA_ROOT, MODEL_DIR
from tooling.local_cluster import LocalCluster
from tooling.net import free_port

pytestmark = pytest.mark.cluster

APP = "emotion-monitor"
TEXTS = ["i am so happy today", "this makes me furious", "i feel so alone tonight", "what a surprise!"]


@dataclass
class Deployed:
    cluster: LocalCluster
    url: str
    config: dict[str, Any]
    config_path: Path

    def redeploy(self, model_version: str) -> None:
        self.config["applications"][0]["deployments"][0]["user_config"]["model_versions"] = {
            "emotion": model_version
        }
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.cluster.dashboard.deploy(self.config_path)


@dataclass
class Load:
    """Closed-loop /predict clients in threads; every answer recorded as (time, status, version)."""

    url: str
    clients: int = 3
    results: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = c.post("/predict", json={"text": TEXTS[(i + n) % len(TEXTS)]})
                    version = r.json().get("model_version", "") if r.status_code == 200 else r.text[:200]
                    self.results.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError as exc:
                    self.results.append((time.monotonic(), 0, type(exc).__name__))

    def __enter__(self) -> Load:
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)
        ]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def failures(self) -> list[tuple[float, int, str]]:
        return [r for r in self.results if r[1] != 200]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no committed model at {MODEL_DIR}")
    posts = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    root = tmp_path_factory.mktemp("cluster")
    registry = LocalRegistry(root / "registry")
    registry.push("emotion", "emo-a", MODEL_DIR)
    registry.push("emotion", "emo-b", MODEL_DIR)
    cluster = LocalCluster(root / "nodes")
    port = free_port()
    config: dict[str, Any] = {
        "proxy_location": "HeadOnly",  # one HTTP port on this machine, not one per node
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": APP,
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                "runtime_env": {
                    "env_vars": {
                        "EMOTION_MONITOR_STORES__EMBEDDED": "false",
                        "EMOTION_MONITOR_BACKGROUND": "false",
                        "EMOTION_MONITOR_MODEL__REGISTRY_DIR": str(root / "registry"),
                        "EMOTION_MONITOR_STORES__DATA_DIR": str(root / "data"),
                    }
                },
                "args": {
                    "model": {"dir": str(MODEL_DIR), "ort_threads": 1},
                    "tasks": ["emotion"],
                    "cache": False,
                    "history": False,
                    "sources": {"default_source": "jsonl", "jsonl_path": str(posts)},
                    "classifier_min_replicas": 2,
                    "classifier_max_replicas": 2,
                    "classifier_resources": {"classifier": 1},  # workers have 2 each
                    "frontend_resources": {"frontend": 1},  # only the head has it
                },
                "deployments": [
                    {
                        "name": "Classifier",
                        "user_config": {
                            "max_batch_size": 16,
                            "batch_wait_timeout_s": 0.005,
                            "model_versions": {"emotion": "emo-a"},
                        },
                    }
                ],
            }
        ],
    }
    config_path = root / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    try:
        cluster.up(workers=2)
        cluster.dashboard.deploy(config_path)
        yield Deployed(cluster, f"http://127.0.0.1:{port}", config, config_path)
    finally:
        cluster.down()


def _replica_nodes(d: Deployed, deployment: str) -> list[str]:
    return [
        r["node_id"] for r in d.cluster.dashboard.replicas(APP, deployment) if r.get("state") == "RUNNING"
    ]


def test_front_end_on_the_head_and_one_classifier_per_worker(deployed: Deployed) -> None:
    ids = deployed.cluster.node_ids()
    assert set(ids) == {"head", "worker1", "worker2"}
    for name in ("Ingress", "Fetcher", "Aggregator"):
        assert _replica_nodes(deployed, name) == [ids["head"]], name
    assert sorted(_replica_nodes(deployed, "Classifier")) == sorted([ids["worker1"], ids["worker2"]])
    r = httpx.post(f"{deployed.url}/analyze", json={"keyword": "coffee", "limit": 40}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["model_versions"] == {"emotion": "emo-a"} and r.json()["count"] > 0


def test_model_version_rolls_under_load_without_a_failure(deployed: Deployed) -> None:
    with Load(deployed.url) as load:
        time.sleep(3)
        rolled_at = time.monotonic()
        deployed.redeploy("emo-b")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(v == "emo-b" for _, _, v in load.results[-6:]):
            time.sleep(0.5)
        time.sleep(3)
    versions = [v for _, s, v in load.results if s == 200]
    assert not load.failures(), load.failures()[:5]
    assert len(load.results) > 20
    before = [v for t, s, v in load.results if t < rolled_at]
    assert set(before) == {"emo-a"}
    # Once a replica answers with the new version, the old one is on its way out: the
    # last answers all come from emo-b (both replicas reconfigured in place).
    assert "emo-b" in versions and set(versions[-10:]) == {"emo-b"}
    first_b = versions.index("emo-b")
    assert versions[first_b:].count("emo-a") <= load.clients * 4  # the other replica's last batches
    r = httpx.post(f"{deployed.url}/analyze", json={"keyword": "music", "limit": 30}, timeout=120)
    assert r.json()["model_versions"] == {"emotion": "emo-b"}
    switched = next(t for t, s, v in load.results if v == "emo-b")
    print(
        f"version roll: {len(load.results)} requests, {len(load.failures())} failed, "
        f"first emo-b answer {switched - rolled_at:.1f} s after serve deploy began"
    )


def test_a_worker_node_dies_under_load_and_serve_moves_its_replica(deployed: Deployed) -> None:
    ids = deployed.cluster.node_ids()
    assert len(_replica_nodes(deployed, "Classifier")) == 2
    with Load(deployed.url) as load:
        time.sleep(3)
        killed_at = time.monotonic()
        assert deployed.cluster.kill("worker2") > 0
        deadline = time.monotonic() + 120
        recovered_at = None
        while time.monotonic() < deadline:
            nodes = _replica_nodes(deployed, "Classifier")
            if nodes == [ids["worker1"]] * 2:
                recovered_at = time.monotonic()
                break
            time.sleep(1.0)
        time.sleep(3)
    assert recovered_at is not None, deployed.cluster.dashboard.replicas(APP, "Classifier")
    after_kill = [r for r in load.results if r[0] >= killed_at]
    failures = load.failures()
    # At most the requests that were in flight on the dead node (one per client); the
    # ingress retries calls whose replica died, so usually none.
    assert len(failures) <= load.clients, failures[:5]
    assert len(after_kill) > 20 and after_kill[-1][1] == 200
    print(
        f"worker crash: replica rescheduled in {recovered_at - killed_at:.1f} s, "
        f"{len(load.results)} requests, {len(failures)} failed"
    )
