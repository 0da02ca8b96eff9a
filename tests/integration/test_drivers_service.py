"""Drivers and representative posts through the whole app: every /analyze answer carries them,
cached answers too, and odd analyses (none, one post, one label, other languages, posts that
are only URLs or emoji) still get a valid answer, never a 500."""

from __future__ import annotations

import httpx
import pytest
import redis

from serve_app.domain.schemas import AnalyzeResponse, LabelAgg
from serve_app.domain.tasks import TASKS
from tests.reddit_server import RedditTestServer, make_post

pytestmark = pytest.mark.integration

CASES = {
    "qqsolo": ["qqsolo is the worst thing that ever happened to me, I am furious"],
    "qqsame": [f"qqsame day {i}: I am so happy and grateful, what a wonderful gift" for i in range(8)],
    "qqforeign": [
        "qqforeign ist seit dem Update völlig kaputt und der Support antwortet nicht",
        "qqforeign は最高です、とても嬉しい",
        "qqforeign no funciona desde la actualización, estoy muy enojado",
        "qqforeign est vraiment génial, merci beaucoup",
    ],
    "qqweird": [
        "https://example.com/qqweird/1",
        "www.qqweird.com/x?y=2",
        "😡🔥 qqweird 🎉🎉",
        "qqweird 👍👍👍",
    ],
}


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=120)


@pytest.fixture(scope="module")
def odd_posts(reddit_server: RedditTestServer) -> RedditTestServer:
    start = 7000
    for k, texts in enumerate(CASES.values()):
        reddit_server.state.posts.extend(make_post(start + 100 * k + i, t) for i, t in enumerate(texts))
    return reddit_server


def _check(body: dict[str, object]) -> AnalyzeResponse:
    answer = AnalyzeResponse.model_validate(body)
    for task in answer.tasks:
        assert list(answer.drivers[task]) == list(TASKS[task].labels)
        assert list(answer.representatives[task]) == list(TASKS[task].labels)
        for label, reps in answer.representatives[task].items():
            count = next(a.count for a in _breakdown(answer, task) if a.label == label)
            assert len(reps) == min(3, count), (task, label)
            assert all(len(r.snippet) <= 240 and r.link for r in reps)
    return answer


def _breakdown(answer: AnalyzeResponse, task: str) -> list[LabelAgg]:
    return list(getattr(answer, TASKS[task].response_field))


def test_every_answer_carries_drivers_and_representatives(
    client: httpx.Client, clean_cache: redis.Redis
) -> None:
    ask = {"keyword": "game", "limit": 120, "source": "jsonl"}
    first = client.post("/analyze", json=ask)
    assert first.status_code == 200, first.text
    answer = _check(first.json())
    assert answer.scored and answer.scored > 100  # of 120
    found = [
        (t, lab, d) for t, labels in answer.drivers.items() for lab, rows in labels.items() for d in rows
    ]
    assert found, "250 real posts give some label a driver"
    for _, _, d in found:
        assert "game" not in d.term.split() and d.z >= 1.96 and d.posts >= 3 and len(d.post_ids) <= d.posts
        assert (
            d.net_sentiment is None
            or -1 <= d.net_sentiment.low <= d.net_sentiment.value <= d.net_sentiment.high <= 1
        )
    again = client.post("/analyze", json=ask).json()
    assert again["source"] == "cache" and again["drivers"] == first.json()["drivers"]
    assert again["representatives"] == first.json()["representatives"]


@pytest.mark.parametrize("keyword", ["qqnothing", *CASES])
def test_odd_analyses_get_a_valid_answer(
    client: httpx.Client, odd_posts: RedditTestServer, clean_cache: redis.Redis, keyword: str
) -> None:
    r = client.post(
        "/analyze",
        json={"keyword": keyword, "limit": 50, "source": "reddit", "include_other_languages": True},
    )
    assert r.status_code == 200, r.text
    answer = _check(r.json())
    assert answer.count == len(CASES.get(keyword, []))
    for task in answer.tasks:
        counts = [a.count for a in _breakdown(answer, task)]
        if max(counts, default=0) == sum(counts):  # no posts, or all of one label: no contrast
            assert all(rows == [] for rows in answer.drivers[task].values())
    if keyword == "qqweird":  # URLs and emoji make no terms
        assert all(rows == [] for labels in answer.drivers.values() for rows in labels.values())
