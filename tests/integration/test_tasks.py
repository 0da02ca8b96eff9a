"""Both tasks through the Serve graph: /predict per task, /analyze breakdowns per task and
the language filter, end to end (the committed artifact has an emotion and a sentiment head)."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.reddit_server import RedditTestServer, make_post

pytestmark = pytest.mark.integration

FOREIGN = [
    ("es", "Estoy muy decepcionado con zorblax, nada funciona desde la actualización y nadie responde"),
    ("fr", "Je suis vraiment déçu par zorblax, plus rien ne marche depuis la mise à jour"),
    ("de", "Zorblax ist seit dem Update völlig kaputt und der Support antwortet einfach nicht mehr"),
]
ENGLISH = [
    "zorblax is broken again after the update and support ignores every ticket, I am furious",
    "I love the new zorblax release, it is fast and the team did a wonderful job",
    "zorblax 2.1 was released today with a changelog on the website",
    "zorblax keeps crashing and I lost a whole day of work, this is terrible",
]


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=120)


@pytest.fixture(scope="module")
def zorblax(reddit_server: RedditTestServer) -> RedditTestServer:
    start = 5000
    posts = [make_post(start + i, t, "") for i, t in enumerate(ENGLISH)]
    posts += [make_post(start + 100 + i, t, "") for i, (_, t) in enumerate(FOREIGN)]
    reddit_server.state.posts.extend(posts)
    return reddit_server


def test_predict_per_task(client: httpx.Client) -> None:
    text = "the new update is a disaster and nobody answers"
    emo = client.post("/predict", json={"text": text}).json()
    sen = client.post("/predict", json={"text": text, "task": "sentiment"}).json()
    assert emo["task"] == "emotion" and set(emo["predictions"][0]["scores"]) >= {"anger", "joy"}
    assert sen["task"] == "sentiment" and set(sen["predictions"][0]["scores"]) == {
        "negative",
        "neutral",
        "positive",
    }
    assert sen["predictions"][0]["label"] == "negative"
    # One artifact answers both tasks: the same version, heads chosen per call.
    assert sen["model_version"] == emo["model_version"]
    bad = client.post("/predict", json={"text": text, "task": "toxicity"})
    assert bad.status_code == 422 and "emotion" in bad.text


def test_labels_list_every_task(client: httpx.Client) -> None:
    body = client.get("/labels").json()
    assert body["tasks"]["sentiment"] == ["negative", "neutral", "positive"]
    assert body["labels"] == body["tasks"]["emotion"]


def test_analyze_gives_both_breakdowns_and_leaves_out_foreign_posts(
    client: httpx.Client, zorblax: RedditTestServer, clean_cache: redis.Redis
) -> None:
    r = client.post(
        "/analyze", json={"keyword": "zorblax", "limit": 50, "source": "reddit", "return_plot": True}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(ENGLISH) + len(FOREIGN)
    assert body["tasks"] == ["emotion", "sentiment"]
    assert body["excluded"] == len(FOREIGN) and body["scored"] == len(ENGLISH)
    assert {lang: body["languages"].get(lang) for lang, _ in FOREIGN} == {"es": 1, "fr": 1, "de": 1}
    assert sum(body["languages"].values()) == body["count"]
    for agg in (body["agg"], body["sentiment_agg"]):
        assert abs(sum(a["pct"] for a in agg) - 100) < 1e-6 and sum(a["count"] for a in agg) == len(ENGLISH)
    neg = body["strongly_negative"]
    assert neg["threshold"] == 0.8 and neg["count"] == len(neg["ids"]) >= 1
    english_ids = [make_post(5000 + i, t)["id"] for i, t in enumerate(ENGLISH)]
    # Only scored (English) posts can be flagged; the two plainly angry ones must be.
    assert set(neg["ids"]) <= set(english_ids), neg
    assert {english_ids[0], english_ids[3]} <= set(neg["ids"]), neg
    assert body["model_versions"]["sentiment"] == body["model_versions"]["emotion"]
    # Neutral is one of the emotion breakdown's labels; the six emotions also come as shares
    # among the posts that carry one, and every share has its 95 % interval.
    assert [a["label"] for a in body["agg"]][-1] == "neutral"
    assert [a["label"] for a in body["emotional_agg"]] == [a["label"] for a in body["agg"]][:-1]
    assert abs(sum(a["pct"] for a in body["emotional_agg"]) - 100) < 1e-6
    assert set(body["breakdown_methods"]) == {"emotion", "sentiment"}
    for a in body["agg"] + body["sentiment_agg"] + body["emotional_agg"]:
        assert 0 <= a["pct_low"] <= a["pct"] <= a["pct_high"] <= 100

    # Asking for every language scores them all; a lower threshold flags at least as many.
    r2 = client.post(
        "/analyze",
        json={"keyword": "zorblax", "limit": 50, "source": "reddit", "include_other_languages": True,
              "negative_threshold": 0.5},
    ).json()  # fmt: skip
    assert r2["source"] == "inference" and r2["excluded"] == 0 and r2["scored"] == r2["count"]
    assert r2["strongly_negative"]["count"] >= neg["count"]


def test_analyze_one_task_is_cached_apart(client: httpx.Client, clean_cache: redis.Redis) -> None:
    both = client.post("/analyze", json={"keyword": "game", "limit": 30, "source": "jsonl"}).json()
    emo = client.post(
        "/analyze", json={"keyword": "game", "limit": 30, "source": "jsonl", "tasks": ["emotion"]}
    )
    assert emo.status_code == 200
    assert emo.json()["source"] == "inference" and emo.json()["sentiment_agg"] is None
    assert emo.json()["strongly_negative"] is None and emo.json()["agg"] == both["agg"]
    again = client.post("/analyze", json={"keyword": "game", "limit": 30, "source": "jsonl"}).json()
    assert again["source"] == "cache" and again["sentiment_agg"] == both["sentiment_agg"]
