"""The whole Serve graph on a real local Ray, real Redis and the real model."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from serve_app.domain.labels import EMOTION_LABELS
from tests.conftest import MODEL_DIR
from tests.reddit_server import RedditTestServer, make_post
from tooling.cli.analyze import format_analysis

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=120)


def test_analyze_jsonl_then_cache_hit(client: httpx.Client, clean_cache: redis.Redis) -> None:
    body = {"keyword": "game", "limit": 250, "return_plot": True, "source": "jsonl"}
    r = client.post("/analyze", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["source"] == "inference" and data["count"] == 250 and data["post_source"] == "jsonl"
    assert [a["label"] for a in data["agg"]] == [
        "sadness", "joy", "love", "anger", "fear", "surprise", "neutral"
    ]  # fmt: skip
    assert sum(a["pct"] for a in data["agg"]) == pytest.approx(100.0, abs=1e-6)
    assert sum(a["count"] for a in data["agg"]) == 250
    assert all(0 <= a["avg_score"] <= 1 for a in data["agg"])
    assert base64.b64decode(data["plot_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["model_version"]
    assert len(clean_cache.keys("em:analyze:*")) == 1

    again = client.post("/analyze", json={**body, "keyword": "  GAME "})  # same normalised keyword
    assert again.status_code == 200
    hit = again.json()
    assert hit["source"] == "cache"
    assert hit["agg"] == data["agg"] and hit["plot_base64"] == data["plot_base64"]


def test_cached_answer_without_plot_then_with_plot(client: httpx.Client, clean_cache: redis.Redis) -> None:
    body = {"keyword": "coffee", "limit": 40, "source": "jsonl"}
    first = client.post("/analyze", json=body).json()
    assert first["source"] == "inference" and first["plot_base64"] is None
    second = client.post("/analyze", json={**body, "return_plot": True}).json()
    assert second["plot_base64"]  # a plot is drawn even though the numbers were cached
    third = client.post("/analyze", json={**body, "return_plot": True}).json()
    assert third["source"] == "cache" and third["plot_base64"] == second["plot_base64"]


def test_predict_agrees_with_the_cli(client: httpx.Client) -> None:
    texts = ["i am so happy today", "I can't believe they cancelled it, I'm furious"]
    r = client.post("/predict", json={"texts": texts})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    cli = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tooling.cli", "predict", *texts, "--model", str(MODEL_DIR), "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    for served, local in zip(preds, cli, strict=True):
        assert served["label"] == local["label"]
        assert served["confidence"] == pytest.approx(local["confidence"], abs=2e-3)
        assert sum(served["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    single = client.post("/predict", json={"text": texts[0]}).json()["predictions"]
    assert len(single) == 1 and single[0]["label"] == preds[0]["label"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        ("post", "/analyze", {"json": {"keyword": ""}}, 422, "at least 1 character"),
        ("post", "/analyze", {"json": {"keyword": "   "}}, 422, "whitespace"),
        ("post", "/analyze", {"json": {"keyword": "k" * 101}}, 422, "at most 100"),
        ("post", "/analyze", {"json": {"keyword": "ai", "limit": 0}}, 422, "greater than or equal to 1"),
        ("post", "/analyze", {"json": {"keyword": "ai", "limit": 10**9}}, 422, "less than or equal to 1000"),
        ("post", "/analyze", {"json": {"keyword": "ai", "limit": "abc"}}, 422, "valid integer"),
        ("post", "/analyze", {"json": {"keyword": ["ai"]}}, 422, "valid string"),
        (
            "post",
            "/analyze",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "JSON decode error",
        ),
        ("post", "/predict", {"json": {"texts": []}}, 422, "at least 1 item"),
        ("post", "/predict", {"json": {}}, 422, "exactly one"),
        ("get", "/analyze", {}, 405, "Method Not Allowed"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_why(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_failing_source_gets_a_named_5xx_not_500(
    client: httpx.Client, reddit_server: RedditTestServer, clean_cache: redis.Redis
) -> None:
    reddit_server.state.faults.status, reddit_server.state.faults.count = 502, 5
    r = client.post("/analyze", json={"keyword": "python", "limit": 10, "source": "reddit"})
    reddit_server.state.faults.count = 0
    assert r.status_code == 502, r.text
    assert "reddit" in r.json()["detail"] and "Traceback" not in r.text


def test_reddit_source_through_the_graph(
    client: httpx.Client, reddit_server: RedditTestServer, clean_cache: redis.Redis
) -> None:
    r = client.post("/analyze", json={"keyword": "python", "limit": 50, "source": "reddit"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["count"] == 50 and data["post_source"] == "reddit"


def test_a_later_page_failing_answers_partially_and_says_so(
    client: httpx.Client, reddit_server: RedditTestServer, clean_cache: redis.Redis
) -> None:
    extra = [make_post(5000 + i, f"my kettle {i} broke again today", "so annoyed") for i in range(150)]
    extra.append(make_post(4998, "kettle thread pinned by mods", "rules", stickied=True))
    extra.append(make_post(4999, "my kettle broke again, removed", "[removed]"))
    reddit_server.state.posts.extend(extra)
    f = reddit_server.state.faults
    f.after_ok, f.status, f.count = 1, 500, 5  # page 1 answers, page 2 fails
    try:
        r = client.post(
            "/analyze", json={"keyword": "kettle", "limit": 150, "source": "reddit", "return_plot": True}
        )
    finally:
        f.after_ok, f.count = 0, 0
        del reddit_server.state.posts[-len(extra) :]
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["partial"] is True and "page 2 failed" in data["partial_reason"], data
    # Page 1: the pinned thread (left out), the removed post (its title kept) and 98 more.
    assert data["count"] == 99 and data["excluded_reasons"].get("stickied") == 1
    assert data["plot_base64"]
    assert "PARTIAL" in "\n".join(format_analysis(data))
    # Cached briefly (the source may recover), not for the hour a full answer gets.
    ttls = [clean_cache.ttl(k) for k in clean_cache.scan_iter("em:analyze:*")]
    assert ttls and max(ttls) <= 60


def test_reference_clients_work_unchanged(client: httpx.Client, clean_cache: redis.Redis) -> None:
    r = client.post("/analyze", json={"keyword": "AI", "limit": 500, "return_plot": True})
    assert r.status_code == 200 and r.json()["plot_base64"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=120) as ac:
            kws = ["python", "coffee", "dogs", "travel", "music", "books"]
            return await asyncio.gather(
                *(ac.post("/analyze", json={"keyword": k, "limit": 250, "lang": "en"}) for k in kws)
            )

    results = asyncio.run(burst())
    assert [x.status_code for x in results] == [200] * 6, [x.text[:300] for x in results]
    assert all(sum(a["pct"] for a in x.json()["agg"]) == pytest.approx(100.0) for x in results)


def test_health_labels_and_docs(client: httpx.Client) -> None:
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["model_loaded"] is True and h.json()["redis"] == "ok"
    assert client.get("/labels").json()["labels"][0] == "sadness"
    schema = client.get("/openapi.json").json()
    assert {"/analyze", "/predict", "/healthz", "/labels"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_ray_job_scores_a_file_through_the_handle(serve_url: str, ray_session: str, tmp_path: Path) -> None:
    if not ray_session:
        pytest.skip("Ray dashboard (job server) not running")
    from ray.job_submission import JobStatus, JobSubmissionClient

    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": i, "text": t}) + "\n"
            for i, t in enumerate(["i am thrilled", "i am so scared", "this is outrageous"] * 30)
        )
    )
    jobs = JobSubmissionClient(ray_session)
    import time

    def run(out: Path, *options: str) -> list[dict[str, Any]]:
        job = jobs.submit_job(
            entrypoint=f"{sys.executable} -m tooling.cli score-file --input {src} --output {out} "
            + " ".join(options),
            runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}},
        )
        deadline = time.monotonic() + 180
        while jobs.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(1)
        assert jobs.get_job_status(job) == JobStatus.SUCCEEDED, jobs.get_job_logs(job)[-2000:]
        return [json.loads(line) for line in out.read_text().splitlines()]

    rows = run(tmp_path / "out.jsonl")
    assert len(rows) == 90 and [r["id"] for r in rows] == list(range(90))
    assert all(r["emotion"]["label"] in set(EMOTION_LABELS) for r in rows)
    rows = run(tmp_path / "sentiment.jsonl", "--task", "sentiment")
    assert len(rows) == 90 and "emotion" not in rows[0]
    assert all(r["sentiment"]["label"] in {"negative", "neutral", "positive"} for r in rows)


def test_posts_scored_once_are_not_scored_again(client: httpx.Client, clean_cache: redis.Redis) -> None:
    """Per-post score cache: a second analysis over the same posts (a different limit, so not an
    answer cache hit) runs the models only on posts it has not seen under this model version."""
    first = client.post("/analyze", json={"keyword": "coffee", "limit": 40, "source": "jsonl"}).json()
    assert first["source"] == "inference" and first["newly_scored"] == first["scored"]
    second = client.post("/analyze", json={"keyword": "coffee", "limit": 60, "source": "jsonl"}).json()
    assert second["source"] == "inference"
    assert second["newly_scored"] == second["scored"] - first["scored"]  # only the 20 older posts
    # Same rows either way: the 40 shared posts keep their labels.
    again = client.post("/analyze", json={"keyword": "coffee", "limit": 40, "source": "jsonl", "lang": "en",
                                          "negative_threshold": 0.81}).json()  # fmt: skip
    assert again["newly_scored"] == 0
    assert [a["count"] for a in again["agg"]] == [a["count"] for a in first["agg"]]
    keys = list(clean_cache.scan_iter("em:score:*"))
    assert len(keys) == 2 * second["scored"]  # one row per post and task
