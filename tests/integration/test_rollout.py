"""Shadow, canary, the promotion gate and rollback, on the committed ONNX model, a real
PostgreSQL database, the real CLI, and (last test) a Classifier deployed on a local Ray Serve.

Candidates live in a throwaway registry: `cand-same` (a byte copy of the live model) and
`cand-shuf` (the same weights with the emotion head's labels permuted in labels.json: a
deliberately worse model whose validation card still looks as good as the live one's).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.classifier import Classifier
from serve_app.config.settings import Settings
from serve_app.lifecycle.gate import PromotionRefused
from serve_app.lifecycle.rollout import CandidateConfig, in_shadow, read_rollout
from serve_app.lifecycle.shadow import ShadowTag, ShadowWorker
from serve_app.model.batching import run_batch
from serve_app.model.registry import LocalRegistry, RegistrySpec
from serve_app.stores.shadow_store import load_pairs, promotions
from tests.integration.conftest import _fresh_database
from tooling.promotion import DeployError, compare, promote, rollback

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TASKS = ["emotion", "sentiment"]


@pytest.fixture(scope="module")
def roll_pg() -> Iterator[str]:
    from serve_app.stores.history_sql import migrate

    for url in _fresh_database("em_roll"):
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def registry(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    shuf = tmp_path_factory.mktemp("shuf") / "m"
    shutil.copytree(model_dir, shuf)
    meta = json.loads((shuf / "labels.json").read_text())
    labels = meta["heads"]["emotion"]["labels"]
    meta["heads"]["emotion"]["labels"] = labels[1:] + labels[:1]  # every row now means another label
    (shuf / "labels.json").write_text(json.dumps(meta))
    reg = LocalRegistry(root)
    for task in TASKS:
        reg.push(task, "cand-same", model_dir)
        reg.push(task, "cand-shuf", shuf)
    return root


@pytest.fixture(scope="module")
def texts(data_root: Path) -> list[str]:
    lines = (data_root / "reddit_emotion7" / "validation.jsonl").read_text().splitlines()[:240]
    return [json.loads(line)["text"] for line in lines]


def _plain(model_dir: Path, registry: Path, tmp: Path, pg: str | None) -> Any:
    """The Classifier's own class outside Serve; `@serve.batch` needs a replica, so its two
    batch shells are replaced by their body (run_batch over one call)."""
    clf = Classifier.func_or_class  # type: ignore[attr-defined]
    c = clf(
        {t: str(model_dir) for t in TASKS}, 1, 128, 32, RegistrySpec(local_dir=str(registry)), str(tmp), pg
    )
    c.apply_versions({})

    async def live(call: Any) -> Any:
        return run_batch(c.predictors, [call])[0]

    async def canary(call: Any) -> Any:
        return run_batch(c.canary_models, [call])[0]

    c._classify, c._classify_canary = live, canary
    return c


def _classify(c: Any, texts: list[str], tag: ShadowTag | None = None, canary: bool = False) -> dict[str, Any]:
    out = asyncio.run(c.classify_tasks(texts, TASKS, tag, canary))
    return {t: (v, [r["label"] for r in rows]) for t, (v, rows) in out.items()}


def test_shadow_stores_pairs_for_the_sampled_share(
    model_dir: Path, registry: Path, roll_pg: str, texts: list[str], tmp_path: Path
) -> None:
    c = _plain(model_dir, registry, tmp_path, roll_pg)
    cfg = CandidateConfig(version="cand-same", shadow_share=0.3)
    assert c.apply_candidate(cfg) == TASKS
    ids = [f"shadow-{i}" for i in range(len(texts))]
    answers = _classify(c, texts, ShadowTag("test", tuple(ids)))
    assert c.drain_shadow(60)
    sampled = {i for i in ids if in_shadow(i, cfg)}
    assert 0.15 * len(ids) < len(sampled) < 0.45 * len(ids)
    for task in TASKS:
        pairs = load_pairs(roll_pg, task, None, "cand-same")
        assert {p.post_id for p in pairs} == sampled and len(pairs) == len(sampled)
        by_id = dict(zip(ids, answers[task][1], strict=True))
        assert all(p.live_label == by_id[p.post_id] for p in pairs)
        # Same weights; INT8 activations are quantized per batch, so a near-tie may flip.
        same = np.mean([p.candidate_label == p.live_label for p in pairs])
        assert same >= 0.9, same
        assert all(p.live_version == answers[task][0] and p.candidate_ms > 0 for p in pairs)
    assert c.shadow.counts.stored == 2 * len(sampled) and c.shadow.counts.dropped == 0


class _Broken:
    @property
    def session(self) -> Any:
        raise RuntimeError("candidate exploded")


def test_a_failing_or_slow_shadow_changes_no_answer_and_adds_no_latency(
    model_dir: Path, registry: Path, texts: list[str], tmp_path: Path
) -> None:
    c = _plain(model_dir, registry, tmp_path, None)
    few = texts[:16]
    tag = ShadowTag("test", tuple(f"slow-{i}" for i in range(len(few))))
    baseline = _classify(c, few, tag)  # no candidate
    t0 = time.perf_counter()
    _classify(c, few, tag)
    plain_s = time.perf_counter() - t0

    c.apply_candidate(CandidateConfig(version="cand-shuf", shadow_share=1.0))
    stored: list[int] = []

    def slow_store(pairs: Any) -> None:
        time.sleep(3)
        stored.append(len(pairs))

    c.shadow = ShadowWorker(lambda: c.shadow_models, slow_store, max_queue=1)
    t0 = time.perf_counter()
    assert _classify(c, few, tag) == baseline
    assert time.perf_counter() - t0 < plain_s + 0.5  # the 3 s store is not waited for
    for _ in range(3):  # the queue holds one job: the rest are dropped and counted
        assert _classify(c, few, tag) == baseline
    assert c.shadow.counts.dropped >= len(few)

    c.shadow = ShadowWorker(lambda: {"emotion": _Broken()}, slow_store)  # type: ignore[dict-item]
    assert _classify(c, few, tag) == baseline
    assert c.shadow.drain(30) and c.shadow.counts.failed == len(few)
    assert "candidate exploded" in c.shadow.counts.errors[-1]


def test_canary_answers_name_the_candidate(
    model_dir: Path, registry: Path, texts: list[str], tmp_path: Path
) -> None:
    c = _plain(model_dir, registry, tmp_path, None)
    c.apply_candidate(CandidateConfig(version="cand-shuf", shadow_share=0.0, canary_share=0.5))
    live = _classify(c, texts[:20])
    canary = _classify(c, texts[:20], canary=True)
    assert {t: v for t, (v, _) in canary.items()} == {"emotion": "cand-shuf", "sentiment": "cand-shuf"}
    assert canary["emotion"][1] != live["emotion"][1] and canary["sentiment"][1] == live["sentiment"][1]
    info = c.info()
    assert info.canary_share == 0.5 and info.candidate["emotion"].version == "cand-shuf"
    c.apply_candidate(CandidateConfig())
    assert c.info().candidate == {} and _classify(c, texts[:20], canary=True) == live


def _config(tmp: Path, model_dir: Path) -> Path:
    text = (
        (REPO / "serve_config.yaml")
        .read_text()
        .replace("model_dir: models/multitask", f"model_dir: {model_dir}")
    )
    path = tmp / "serve_config.yaml"
    path.write_text(text)
    return path


def _settings(registry: Path, pg: str, tmp: Path, model_dir: Path, **kw: Any) -> Settings:
    return Settings(
        model={"registry_dir": registry, "dir": model_dir},
        stores={"postgres_url": pg, "data_dir": tmp},
        gate={"min_pairs": 200, **kw.pop("gate", {})},
        **kw,
    )


@pytest.fixture(scope="module")
def shadowed(model_dir: Path, registry: Path, roll_pg: str, texts: list[str], tmp_path_factory: Any) -> str:
    """Every validation text shadowed by both candidates (pairs in PostgreSQL)."""
    tmp = tmp_path_factory.mktemp("shadowed")
    for version in ("cand-same", "cand-shuf"):
        c = _plain(model_dir, registry, tmp, roll_pg)
        c.apply_candidate(CandidateConfig(version=version, shadow_share=1.0))
        for start in range(0, len(texts), 60):
            chunk = texts[start : start + 60]
            _classify(c, chunk, ShadowTag("gate", tuple(f"val-{start + i}" for i in range(len(chunk)))))
        assert c.drain_shadow(120)
    return roll_pg


def test_gate_refuses_a_label_shuffled_candidate_and_accepts_an_identical_one(
    model_dir: Path, registry: Path, shadowed: str, texts: list[str], tmp_path: Path
) -> None:
    s = _settings(registry, shadowed, tmp_path, model_dir)
    config = _config(tmp_path, model_dir)
    with pytest.raises(
        PromotionRefused, match=r"shadow\.emotion\.share\.\w+: .*interval beyond it by"
    ) as refused:
        promote(config, "cand-shuf", shadowed, s, config_only=True, who="test")
    failed = {c.name.split(".")[1] for c in refused.value.result.failed}
    assert failed == {"emotion"}  # the sentiment head is the same; its figures pass
    assert read_rollout(config) == ({}, CandidateConfig())  # nothing changed

    short = _settings(registry, shadowed, tmp_path, model_dir, gate={"min_pairs": 100_000})
    with pytest.raises(
        PromotionRefused, match=r"shadow\.emotion\.pairs: \d+ pairs, need 100000 \(\d+ short\)"
    ):
        promote(config, "cand-same", shadowed, short, config_only=True)

    (comp,) = compare(shadowed, "cand-same", "emotion")
    # Same weights; INT8 activations are quantized per batch, so a near-tie may flip.
    assert comp.n >= len(texts) and comp.agreement > 0.9 and comp.kappa > 0.85
    out = promote(config, "cand-same", shadowed, s, config_only=True, who="tester@ci")
    assert out.to_versions == {"emotion": "cand-same", "sentiment": "cand-same"} and not out.deployed
    assert read_rollout(config)[0] == out.to_versions
    last = promotions(shadowed, 1)[0]
    assert (last.actor, last.action, last.from_versions, last.to_versions) == (
        "tester@ci",
        "promote",
        {},
        out.to_versions,
    )
    assert last.gate["version"] == "cand-same" and len(last.gate["checks"]) > 10  # type: ignore[arg-type]


def test_compare_route_answers_the_direct_comparison(shadowed: str) -> None:
    """GET /models/compare on the ingress's FastAPI app (its watch desk on this database)."""
    from fastapi.testclient import TestClient

    import serve_app.api.rollout_api  # noqa: F401  (registers /models/compare)
    from serve_app.api.http_api import api
    from serve_app.api.watch_api import WatchDesk

    async def served(tasks: object) -> list[str]:
        return TASKS

    saved = getattr(api.state, "watch", None)
    api.state.watch = WatchDesk(shadowed, "jsonl", served, lambda request: None)
    try:
        client = TestClient(api)
        body = client.get("/models/compare", params={"candidate_version": "cand-shuf"}).json()
        assert body["comparisons"] == [c.model_dump(mode="json") for c in compare(shadowed, "cand-shuf")]
        assert [c["task"] for c in body["comparisons"]] == TASKS
        bad = client.get("/models/compare", params={"since_hours": -1})
        assert bad.status_code == 422 and "since_hours" in bad.text
    finally:
        api.state.watch = saved


def test_cli_refusal_exits_nonzero_and_names_the_gate(
    model_dir: Path, registry: Path, shadowed: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "EMOTION_MONITOR_STORES__POSTGRES_URL": shadowed,
        "EMOTION_MONITOR_MODEL__REGISTRY_DIR": str(registry),
        "EMOTION_MONITOR_STORES__DATA_DIR": str(tmp_path),
        "EMOTION_MONITOR_GATE__MIN_PAIRS": "200",
    }
    config = _config(tmp_path, model_dir)
    cli = [str(Path(sys.executable).parent / "emotion-monitor"), "model"]
    done = subprocess.run(
        [*cli, "promote", "cand-shuf", "--config", str(config), "--config-only"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3, done.stderr
    assert "promotion of cand-shuf refused" in done.stderr and "shadow.emotion.share." in done.stderr
    shown = subprocess.run(
        [*cli, "compare", "--version", "cand-shuf", "--json"], env=env, capture_output=True, text=True
    )
    comps = {c["task"]: c for c in json.loads(shown.stdout)}
    assert comps["sentiment"]["kappa"] > 0.85 and comps["emotion"]["agreement"] < 0.5


def test_promote_without_a_cluster_edits_records_and_says_so(
    model_dir: Path, registry: Path, shadowed: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, model_dir)
    s = _settings(registry, shadowed, tmp_path, model_dir)
    with pytest.raises(DeployError, match="recorded as not deployed"):
        promote(config, "cand-same", shadowed, s, address="http://127.0.0.1:9", who="test")
    assert read_rollout(config)[0] == dict.fromkeys(TASKS, "cand-same")
    last = promotions(shadowed, 1)[0]
    assert last.action == "promote" and not last.deployed


def test_rollback_restores_the_previous_answers(
    model_dir: Path, registry: Path, shadowed: str, texts: list[str], tmp_path: Path
) -> None:
    config = _config(tmp_path, model_dir)
    c = _plain(model_dir, registry, tmp_path, None)
    before = _classify(c, texts[:30])
    lenient = _settings(registry, shadowed, tmp_path, model_dir, gate={"share_bound": 1.0})
    promote(config, "cand-shuf", shadowed, lenient, config_only=True, who="test")
    c.apply_versions(read_rollout(config)[0])  # what Classifier.reconfigure does after `serve deploy`
    promoted = _classify(c, texts[:30])
    assert promoted["emotion"][0] == "cand-shuf" and promoted["emotion"][1] != before["emotion"][1]

    out = rollback(config, shadowed, config_only=True, who="test")
    assert out.to_versions == {} and read_rollout(config) == ({}, CandidateConfig())
    c.apply_versions(read_rollout(config)[0])
    assert _classify(c, texts[:30]) == before
    assert [p.action for p in promotions(shadowed, 2)] == ["rollback", "promote"]


def test_candidate_rolls_through_serve_without_restart(
    serve_http: str, model_dir: Path, registry: Path, roll_pg: str, texts: list[str]
) -> None:
    """On Ray Serve: the user_config's candidate is loaded by reconfigure(), canary calls are
    answered by it, the shadow pairs land in PostgreSQL; reconfiguring without it drops it
    in the same replica."""
    from ray import serve

    def deploy(candidate: dict[str, Any]) -> Any:
        app = Classifier.options(  # type: ignore[attr-defined]
            name="Classifier",
            user_config={"max_batch_size": 32, "batch_wait_timeout_s": 0.005, "candidate": candidate},
            autoscaling_config=None,
            num_replicas=1,
        ).bind(
            {t: str(model_dir) for t in TASKS},
            1,
            128,
            32,
            RegistrySpec(local_dir=str(registry)),
            None,
            roll_pg,
        )
        return serve.run(app, name="rollout-test", route_prefix="/rollout-test")

    h = deploy({"version": "cand-same", "shadow_share": 1.0, "canary_share": 1.0})
    try:
        ids = tuple(f"serve-{i}" for i in range(12))
        live = h.classify_tasks.remote(texts[:12], TASKS, ShadowTag("serve", ids)).result()
        canary = h.classify_tasks.remote(texts[:12], TASKS, None, True).result()
        assert {t: v for t, (v, _) in canary.items()} == dict.fromkeys(TASKS, "cand-same")
        assert [r["label"] for r in canary["emotion"][1]] == [r["label"] for r in live["emotion"][1]]
        assert h.drain_shadow.remote(60).result()
        pairs = load_pairs(roll_pg, "emotion", None, "cand-same")
        assert {p.post_id for p in pairs if p.source == "serve"} == set(ids)
        pid = h.info.remote().result()
        assert pid.candidate["emotion"].version == "cand-same"
        # What `serve deploy` with a changed user_config does (serve.run would restart the
        # replica: it gives the app a new code version each time).
        h.reconfigure.remote({"max_batch_size": 32, "batch_wait_timeout_s": 0.005, "candidate": {}}).result()
        info = h.info.remote().result()
        assert info.candidate == {} and info.canary_share == 0.0
        cfg, counts = h.shadow_status.remote().result()
        assert not cfg.active and counts.queued == len(ids)  # the same replica: no restart
        again = h.classify_tasks.remote(texts[:12], TASKS, None, True).result()
        assert {t: v for t, (v, _) in again.items()} == {t: v for t, (v, _) in live.items()}
        assert np.array_equal(
            [r["confidence"] for r in again["emotion"][1]], [r["confidence"] for r in live["emotion"][1]]
        )
    finally:
        serve.delete("rollout-test")
