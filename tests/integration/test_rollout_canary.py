"""Canary through the whole app on Ray Serve: `/analyze` answers a stated share of keywords
with the candidate, always the same keywords, and every answer names the version that
produced it (cache hits included). Real Ray, Redis, ONNX; the candidate a label-shuffled copy
of the committed model, so its answers visibly differ."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.lifecycle.rollout import CandidateConfig, keyword_in_canary
from serve_app.model.registry import LocalRegistry
from tests.integration.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.integration

PREFIX = "/rollout-canary"
SHARE = 0.5
POOL = ["coffee", "game", "python", "music", "dog", "work", "food", "money", "school", "movie"]


@pytest.fixture(scope="module")
def canary_url(
    serve_http: str, model_dir: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings

    reg_root = tmp_path_factory.mktemp("canary-registry")
    shuf = tmp_path_factory.mktemp("canary-shuf") / "m"
    shutil.copytree(model_dir, shuf)
    meta = json.loads((shuf / "labels.json").read_text())
    labels = meta["heads"]["emotion"]["labels"]
    meta["heads"]["emotion"]["labels"] = labels[1:] + labels[:1]
    (shuf / "labels.json").write_text(json.dumps(meta))
    for task in ("emotion", "sentiment"):
        LocalRegistry(reg_root).push(task, "canary-shuf", shuf)
    settings = Settings(
        stores={
            "redis_url": TEST_REDIS_URL,
            "postgres_url": None,
            "embedded": False,
            "data_dir": tmp_path_factory.mktemp("canary-data"),
        },
        background=False,
        model={"registry_dir": reg_root},
    )
    args = AppArgs(
        model=ModelSettings(dir=model_dir),
        sources=SourcesSettings(
            default_source="jsonl", jsonl_path=data_root / "reddit_sample" / "posts.jsonl"
        ),
        classifier_max_replicas=1,
        classifier_num_cpus=0.5,
        history=False,
        candidate=CandidateConfig(version="canary-shuf", shadow_share=0.0, canary_share=SHARE),
    )
    serve.run(make_app(args, settings, app_name="rollout-canary"), name="rollout-canary", route_prefix=PREFIX)
    yield serve_http + PREFIX
    serve.delete("rollout-canary")


def test_the_same_keyword_always_gets_the_same_version(canary_url: str) -> None:
    canary = [k for k in POOL if keyword_in_canary(k, SHARE)][:2]
    live = [k for k in POOL if not keyword_in_canary(k, SHARE)][:2]
    assert len(canary) == 2 and len(live) == 2
    with httpx.Client(base_url=canary_url, timeout=120) as http:
        seen: dict[str, set[str]] = {}
        for kw in canary + live:
            for asked in (kw, kw.upper(), f"  {kw} "):  # the normalized keyword decides
                r = http.post("/analyze", json={"keyword": asked, "limit": 20, "source": "jsonl"})
                assert r.status_code == 200, r.text
                body = r.json()
                seen.setdefault(kw, set()).add(body["model_versions"]["emotion"])
                assert body["model_version"] == body["model_versions"]["emotion"]
    for kw in canary:
        assert seen[kw] == {"canary-shuf"}, (kw, seen[kw])
    for kw in live:
        assert seen[kw] != {"canary-shuf"} and len(seen[kw]) == 1, (kw, seen[kw])
