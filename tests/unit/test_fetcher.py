"""Fetcher core without Ray: the JSONL corpus index and both Reddit code paths."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from serve_app.config.settings import RedditSettings, SourcesSettings
from serve_app.domain.errors import SourceConfigError, SourceError
from serve_app.domain.posts import Post
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.post_sources import FetcherConfig, PostSources
from serve_app.sources.reddit import RedditPrawClient, RedditPublicClient
from serve_app.sources.request_budget import BudgetConfig, RequestBudget
from tests.reddit_server import CLIENT_ID, CLIENT_SECRET, RedditTestServer, make_post

pytestmark = pytest.mark.unit


def post(i: int, title: str, body: str = "", t: float | None = None) -> Post:
    return Post(f"id{i}", title, body, "sub", t if t is not None else float(i), i, f"https://r/{i}")


def test_corpus_matches_whole_words_and_phrases_newest_first() -> None:
    c = JsonlCorpus(
        [
            post(1, "AI is coming"),
            post(2, "she said hello"),  # "said" must not match "ai"
            post(3, "New AI model", "about machine learning"),
            post(4, "learning machine"),  # words in the wrong order
            post(5, "Machine Learning rocks"),
        ]
    )
    assert [p.id for p in c.search("AI", 10).posts] == ["id3", "id1"]
    assert [p.id for p in c.search("machine learning", 10).posts] == ["id5", "id3"]
    assert [p.id for p in c.search("  MACHINE   learning ", 1).posts] == ["id5"]
    assert c.search("nothing-here", 10).posts == []
    assert c.search("!!!", 10).posts == []
    assert c.search("ai", 0).posts == []


def test_corpus_loads_the_shared_sample_and_searches_fast(data_root: Path) -> None:
    c = JsonlCorpus.from_file(data_root / "reddit_sample" / "posts.jsonl")
    assert len(c) == 30801
    found = c.search("game", 250)
    hits = found.posts
    assert len(hits) == 250 and found.partial is None
    assert all("game" in f"{p.title} {p.body}".lower() for p in hits)
    assert [p.created_utc for p in hits] == sorted((p.created_utc for p in hits), reverse=True)
    assert len({p.id for p in hits}) == 250


def test_missing_corpus_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="EMOTION_MONITOR_SOURCES__JSONL_PATH"):
        JsonlCorpus.from_file(tmp_path / "none.jsonl")
    with pytest.raises(SourceConfigError, match="unknown source"):
        PostSources(FetcherConfig()).fetch("twitter", "ai", 5)


@pytest.fixture()
def reddit() -> Iterator[RedditTestServer]:
    posts = [make_post(i, f"Post {i} about python", "body text" if i % 2 else "") for i in range(230)]
    posts += [make_post(1000 + i, f"Other {i}") for i in range(20)]
    with RedditTestServer(posts) as srv:
        yield srv


def test_public_json_paginates_to_the_limit_without_duplicates(reddit: RedditTestServer) -> None:
    client = RedditPublicClient(reddit.url, timeout_s=5)
    got = client.search("python", 150).posts
    assert len(got) == 150
    assert len({p.id for p in got}) == 150
    assert got[0].url == f"{reddit.url}/r/test/comments/p00000/post/"
    searches = [r for r in reddit.state.requests if r.startswith("/search.json")]
    assert len(searches) == 2  # pages of 100 and 50
    everything = client.search("python", 1000)
    assert len(everything.posts) == 230 and everything.partial is None  # Reddit has no more


def test_public_json_retries_5xx_then_succeeds(reddit: RedditTestServer) -> None:
    reddit.state.faults.status, reddit.state.faults.count = 503, 2
    sleeps: list[float] = []
    client = RedditPublicClient(reddit.url, timeout_s=5, retries=2, sleep=sleeps.append)
    assert len(client.search("python", 10).posts) == 10
    assert sleeps == [0.5, 1.0]  # exponential backoff


def test_public_json_gives_up_with_a_named_error(reddit: RedditTestServer) -> None:
    reddit.state.faults.status, reddit.state.faults.count = 500, 100
    client = RedditPublicClient(reddit.url, timeout_s=5, retries=1, sleep=lambda s: None)
    with pytest.raises(SourceError) as err:
        client.search("python", 10)
    assert err.value.source == "reddit" and err.value.kind == "unreachable"
    assert "500" in err.value.message


def test_public_json_429_honours_retry_after_and_reports_rate_limit(reddit: RedditTestServer) -> None:
    f = reddit.state.faults
    f.status, f.count, f.retry_after = 429, 100, 7
    sleeps: list[float] = []
    client = RedditPublicClient(reddit.url, timeout_s=5, retries=2, sleep=sleeps.append)
    with pytest.raises(SourceError) as err:
        client.search("python", 10)
    assert err.value.kind == "rate_limited"
    assert sleeps == [7.0, 7.0]


def test_public_json_slow_server_times_out_within_the_deadline(reddit: RedditTestServer) -> None:
    reddit.state.faults.delay_s = 2.0
    client = RedditPublicClient(reddit.url, timeout_s=0.3, retries=1, deadline_s=1.5, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        client.search("python", 10)
    assert err.value.kind == "timeout"
    assert time.monotonic() - started < 5  # bounded, not hung


def test_public_json_waits_for_an_exhausted_rate_limit_window(reddit: RedditTestServer) -> None:
    reddit.state.faults.ratelimit_remaining, reddit.state.faults.ratelimit_reset = 0, 2
    budget = RequestBudget(BudgetConfig(600, 10, 0, "test"))  # this process's bucket
    client = RedditPublicClient(reddit.url, timeout_s=5, budget=budget)
    started = time.monotonic()
    assert len(client.search("python", 150).posts) == 150
    assert time.monotonic() - started >= 1.9  # the second page waited for the window to reset


def test_unreachable_reddit_is_a_named_error() -> None:
    client = RedditPublicClient("http://127.0.0.1:9", timeout_s=1, retries=0)
    with pytest.raises(SourceError, match="reddit") as err:
        client.search("x", 5)
    assert err.value.kind == "unreachable"


def test_praw_path_authenticates_and_searches(reddit: RedditTestServer) -> None:
    client = RedditPrawClient(
        CLIENT_ID,
        CLIENT_SECRET,
        "emotion-monitor-tests/0.1",
        oauth_url=reddit.url,
        reddit_url=reddit.url,
        timeout_s=5,
    )
    got = client.search("python", 120).posts
    assert len(got) == 120
    assert len({p.id for p in got}) == 120
    assert got[0].title == "Post 0 about python" and got[1].body == "body text"
    assert got[0].subreddit == "test"
    assert any(r.startswith("/r/all/search") for r in reddit.state.requests)


def test_praw_path_with_bad_credentials_is_a_named_error(reddit: RedditTestServer) -> None:
    client = RedditPrawClient(
        CLIENT_ID,
        "wrong",
        "emotion-monitor-tests/0.1",
        oauth_url=reddit.url,
        reddit_url=reddit.url,
        timeout_s=5,
    )
    with pytest.raises(SourceError) as err:
        client.search("python", 5)
    assert err.value.source == "reddit"


def test_sources_choose_praw_only_with_credentials(reddit: RedditTestServer, tmp_path: Path) -> None:
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text(json.dumps({"id": "a", "title": "python rocks", "body": "", "created_utc": 1}) + "\n")
    public = PostSources(
        FetcherConfig(SourcesSettings(jsonl_path=corpus), RedditSettings(public_url=reddit.url))
    )
    assert isinstance(public.reddit(), RedditPublicClient)
    assert [p.id for p in public.fetch("jsonl", "python", 5).posts] == ["a"]
    oauth = PostSources(
        FetcherConfig(
            reddit=RedditSettings(
                client_id=CLIENT_ID,
                client_secret=SecretStr(CLIENT_SECRET),
                oauth_url=reddit.url,
                www_url=reddit.url,
            )
        )
    )
    assert isinstance(oauth.reddit(), RedditPrawClient)
    assert len(oauth.fetch("reddit", "python", 3).posts) == 3
