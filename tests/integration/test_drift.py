"""The drift watch end to end, with the committed model (its reference profile and embedding
output), real Redis windows and PostgreSQL: posts of another domain raise a drift alert
within two checks, the Reddit corpus itself raises none over 24 checks.

Posts are scored once (a few hundred) and replayed in random slices, as the Classifier's
tap would record them."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import redis

from serve_app.config.settings import DriftSettings, MonitorSettings
from serve_app.model.drift_profile import EMBEDDINGS_FILE, PROFILE_FILE, ReferenceProfile, load_profile
from serve_app.model.predictor import OnnxPredictor
from serve_app.monitoring.alerts import alert_payload, deliver
from serve_app.monitoring.drift import DriftThresholds, check_window
from serve_app.monitoring.drift_checks import DriftConfig, record_checks, run_checks, submit_retrain
from serve_app.stores.drift_store import DriftTap, TapConfig, drift_keyword, latest_checks
from serve_app.stores.watchlists import pending_alerts
from tests.integration.conftest import TEST_REDIS_URL
from tests.webhook_receiver import WebhookReceiver
from training.profile import add_embedding_output, read_jsonl, reference_posts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "multitask"
REDIS_URL = TEST_REDIS_URL.rsplit("/", 1)[0] + "/9"
WINDOW = 300
TASKS = ("emotion", "sentiment")


class Scored:
    """Probabilities per task and embeddings of some texts, scored once."""

    def __init__(self, pred: OnnxPredictor, texts: list[str]) -> None:
        self.probs, emb = pred.probabilities_and_embeddings(texts)
        assert emb is not None
        self.emb = emb

    def slice(self, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {t: p[idx] for t, p in self.probs.items()}, self.emb[idx]


@pytest.fixture(scope="module")
def scored(data_dir: Path) -> dict[str, Scored]:
    """In-domain: corpus posts outside the profile's reference sample; other domain: tweets."""
    pred = OnnxPredictor(MODEL, threads=2)
    corpus = data_dir / "reddit_sample" / "posts.jsonl"
    reference = set(reference_posts(corpus, 1000, 0))
    pool = [t for t in reference_posts(corpus, 1500, 7) if t not in reference][:400]
    tweets = [str(r["text"]) for r in read_jsonl(data_dir / "sentiment_en" / "validation.jsonl")[:WINDOW]]
    return {"reddit": Scored(pred, pool), "tweets": Scored(pred, tweets)}


@pytest.fixture()
def store(pg_url: str) -> Iterator[tuple[str, redis.Redis]]:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis: {exc}")

    def wipe() -> None:
        r.flushdb()
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute("TRUNCATE drift_checks")
            c.execute("DELETE FROM alerts WHERE keyword_norm LIKE 'drift:%'")

    wipe()
    yield pg_url, r
    wipe()
    r.close()


def _config(pg_url: str, **kw: object) -> DriftConfig:
    # A webhook is set: drift alerts wait for delivery (`pending`).
    return DriftConfig(
        redis_url=REDIS_URL,
        postgres_url=pg_url,
        model_dirs=tuple((t, str(MODEL)) for t in TASKS),
        versions=tuple((t, "test") for t in TASKS),
        settings=DriftSettings.model_validate({"window": WINDOW, **kw}),
        monitor=MonitorSettings.model_validate({"alert_webhook_url": "http://127.0.0.1:9/hook"}),
    )


def _replay(tap: DriftTap, source: str, data: Scored, idx: np.ndarray) -> None:
    """What the Classifier's tap records for one model batch of these posts."""
    probs, emb = data.slice(idx)
    tap.offer_batch([(source, TASKS)], [len(idx)], probs, emb)
    tap.flush()


def _check(cfg: DriftConfig, profiles: dict[str, ReferenceProfile | None]) -> list[str]:
    return [c.task for c in record_checks(cfg, run_checks(cfg, profiles))]


def test_the_reddit_corpus_raises_no_drift_over_24_checks(scored: dict[str, Scored], store: tuple) -> None:
    pg_url, _ = store
    cfg = _config(pg_url)
    profiles = {t: load_profile(MODEL) for t in TASKS}
    tap = DriftTap(TapConfig(REDIS_URL, DriftSettings(window=WINDOW)))
    rng = np.random.default_rng(0)
    for _ in range(24):
        _replay(tap, "replay", scored["reddit"], rng.choice(400, WINDOW, replace=False))
        assert _check(cfg, profiles) == []
    sql = "SELECT count(*), count(*) FILTER (WHERE drifted), max(cpu_s) FROM drift_checks"
    with psycopg.connect(pg_url) as c:
        n, drifted, cpu = c.execute(sql).fetchone()  # type: ignore[misc]
    assert (n, drifted) == (48, 0)  # 24 checks x 2 tasks
    assert cpu < 1.0
    assert not [a for a in pending_alerts(pg_url) if a.keyword.startswith("drift:")]
    latest = latest_checks(pg_url, "replay", "emotion")
    assert len(latest) == 1 and latest[0].posts == WINDOW and not latest[0].drifted
    assert {t.name for t in latest[0].tests} == {"label_mix", "confidence", "embedding"}
    _get_drift(pg_url)


def _get_drift(pg_url: str) -> None:
    """GET /drift on the ingress's FastAPI app (its watch desk pointed at this database)."""
    from fastapi.testclient import TestClient

    import serve_app.api.drift_api  # noqa: F401  (registers /drift)
    from serve_app.api.http_api import api
    from serve_app.api.watch_api import WatchDesk

    async def served(tasks: object) -> list[str]:
        return list(TASKS)

    saved = getattr(api.state, "watch", None)
    api.state.watch = WatchDesk(pg_url, "replay", served, lambda request: None)
    try:
        client = TestClient(api)
        body = client.get("/drift", params={"source": "replay"}).json()
        assert [c["task"] for c in body["checks"]] == ["emotion", "sentiment"]
        assert body["checks"][0]["posts"] == WINDOW and not body["checks"][0]["drifted"]
        assert body["checks"][0]["reference"].startswith("1000 posts of reddit_sample")
        assert client.get("/drift", params={"source": "nowhere"}).json()["checks"] == []
        bad = client.get("/drift", params={"task": ""})
        assert bad.status_code == 422 and "task" in bad.text
    finally:
        api.state.watch = saved


def test_tweets_raise_a_drift_alert_within_two_checks_through_the_webhook(
    scored: dict[str, Scored], store: tuple
) -> None:
    pg_url, _ = store
    cfg = _config(pg_url)
    profiles = {t: load_profile(MODEL) for t in TASKS}
    tap = DriftTap(TapConfig(REDIS_URL, DriftSettings(window=WINDOW)))
    # In domain first: quiet. (A random slice: the pool is in corpus order, grouped by subreddit.)
    _replay(tap, "reddit", scored["reddit"], np.random.default_rng(1).choice(400, WINDOW, replace=False))
    assert _check(cfg, profiles) == []
    half = WINDOW // 2
    alerted: list[str] = []
    for k in range(2):  # tweets arrive over two checks
        _replay(tap, "reddit", scored["tweets"], np.arange(k * half, (k + 1) * half))
        alerted += _check(cfg, profiles)
        if alerted:
            break
    assert alerted, "no drift alert within two checks of tweets"
    alerts = [a for a in pending_alerts(pg_url) if a.keyword == drift_keyword("reddit")]
    assert alerts and "embedding" in alerts[0].label
    # The same delivery as spike alerts: the monitor's webhook call, with a drift payload.
    with WebhookReceiver() as receiver:

        async def send() -> bool:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await deliver(client, receiver.url, alerts[0]))[0]

        assert asyncio.run(send())
        body = receiver.received[0]
    assert body["kind"] == "emotion-monitor.drift" and "reddit" in body["text"]
    assert alert_payload(alerts[0])["kind"] == "emotion-monitor.drift"


def test_the_detached_drift_actor_checks_and_alerts(
    scored: dict[str, Scored], store: tuple, ray_session: str
) -> None:
    """Registered like the other background actors (start_background / stop_background)."""
    import ray

    from deployments.background import BackgroundConfigs, start_background, stop_background
    from deployments.drift_watch import drift_actor_name

    pg_url, _ = store
    tap = DriftTap(TapConfig(REDIS_URL, DriftSettings(window=WINDOW)))
    _replay(tap, "jsonl", scored["tweets"], np.arange(WINDOW))
    handles = start_background(BackgroundConfigs(drift=_config(pg_url, cpu_threshold=100.0)), "drift-test")
    try:
        actor = handles[drift_actor_name("drift-test")]
        assert ray.get(actor.run_once.remote(True), timeout=120) == 2  # both heads drifted
        status = ray.get(actor.status.remote(), timeout=30)
        assert status.checks_total == 2 and status.alerts_total == 2 and status.retrain_jobs == []
    finally:
        assert stop_background("drift-test") == [drift_actor_name("drift-test")]


def test_the_served_app_records_scored_posts_per_source(serve_url: str, clean_cache: redis.Redis) -> None:
    """The Classifier's tap in the running app: an /analyze of the corpus leaves its posts'
    float16 rows (probabilities + embedding) in the window of source `jsonl`."""
    from serve_app.stores.drift_store import read_window, window_key

    with httpx.Client(base_url=serve_url, timeout=120) as c:
        body = c.post("/analyze", json={"keyword": "coffee", "limit": 30, "source": "jsonl"}).json()
    n = body["scored"]
    assert n > 0
    deadline = time.monotonic() + 20  # the tap writes every second, off the answer's path
    while clean_cache.llen(window_key("jsonl", "emotion")) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    probs, emb = read_window(clean_cache, "jsonl", "emotion", 500, 7)
    assert len(probs) == n and emb is not None and emb.shape == (n, 384)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=0.01)


def test_retraining_is_submitted_only_when_retrain_on_drift_is_on(pg_url: str) -> None:
    submitted: list[str] = []

    class Client:
        def __init__(self, address: str) -> None:
            self.address = address

        def submit_job(self, entrypoint: str) -> str:
            submitted.append(entrypoint)
            return "raysubmit_1"

    assert submit_retrain(_config(pg_url), Client) is None
    assert submitted == []
    assert submit_retrain(_config(pg_url, retrain_on_drift=True), Client) == "raysubmit_1"
    assert submitted == ["emotion-monitor retrain --config configs/multitask.yaml"]


def test_an_artifact_without_embedding_output_or_profile_still_serves(tmp_path: Path) -> None:
    """Older artifacts: the predictor answers as before and drift says "no reference";
    adding the output changes no logit."""
    import onnx

    old = tmp_path / "old"
    shutil.copytree(MODEL, old)
    for name in (PROFILE_FILE, EMBEDDINGS_FILE):
        (old / name).unlink()
    model = onnx.load(str(old / "model.onnx"))
    keep = [o for o in model.graph.output if o.name != "embedding"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    nodes = [n for n in model.graph.node if "embedding" not in n.output]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(old / "model.onnx"))
    texts = ["i am so happy today", "this makes me furious", "the bus was late again"]
    pred = OnnxPredictor(old, threads=1)
    probs, emb = pred.probabilities_and_embeddings(texts)
    assert pred.embedding_output is None and emb is None and probs["emotion"].shape == (3, 7)
    assert load_profile(old) is None
    check = check_window("reddit", "emotion", "v", probs["emotion"], None, None, DriftThresholds())
    assert check.reference == "no reference" and not check.drifted and check.estimated_accuracy
    before = pred.logits_all(texts)
    assert add_embedding_output(old / "model.onnx") and not add_embedding_output(old / "model.onnx")
    after = OnnxPredictor(old, threads=1)
    _, emb = after.probabilities_and_embeddings(texts)
    assert emb is not None and emb.shape == (3, 384)
    for task, logits in after.logits_all(texts).items():
        np.testing.assert_array_equal(logits, before[task])


def test_the_committed_profile_describes_its_heads() -> None:
    profile = load_profile(MODEL)
    assert profile is not None and profile.embeddings is not None
    assert profile.embeddings.dtype == np.float16 and profile.embeddings.shape == (1000, 384)
    meta = json.loads((MODEL / PROFILE_FILE).read_text())
    for task in TASKS:
        head = profile.heads[task]
        assert head.true_mix is not None and abs(sum(head.true_mix) - 1) < 1e-3
        assert head.accuracy is not None and 0.5 < head.accuracy < 1
        assert sum(head.predicted_counts) == 1000 and len(head.confidences) == 1000
        assert meta["heads"][task]["confidence_quantiles"]["p50"] > 0.4
    assert replace(profile, made_from="x").made_from == "x"
