"""The replayed feed (source "replay") without Ray: its clock, the planted burst, the source
selection, the monitor's bucket for it, and the demo's printed lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deployments.monitor_actor import MonitorConfig
from serve_app.config.settings import MonitorSettings, ReplaySettings, SourcesSettings
from serve_app.domain.errors import SourceConfigError
from serve_app.domain.posts import Post
from serve_app.domain.schemas import AlertOut, TrendsResponse
from serve_app.monitoring.trends import parse_bucket
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.post_sources import FetcherConfig, PostSources
from serve_app.sources.replay import (
    DEMO_KEYWORD,
    PLANTED_POSTS,
    PLANTED_SUBREDDIT,
    PLANTED_TERM,
    ReplayFeed,
    planted_texts,
)
from tests.conftest import DATA_ROOT
from tooling.demo import DemoOutcome, alert_line, trend_lines

pytestmark = pytest.mark.unit

T0 = 1_900_000_000.0  # the replay's start in these tests


def post(i: int, title: str, sub: str = "sub") -> Post:
    # Corpus time runs 2008 onwards, one post a day: rank i is the i-th oldest.
    return Post(f"p{i}", title, "", sub, 1_200_000_000.0 + 86_400 * i, 1, f"https://r/{i}")


def replay_plan(posts_per_s: float, backlog_s: float, burst_at_s: float, burst_s: float) -> ReplaySettings:
    return ReplaySettings(
        posts_per_s=posts_per_s, backlog_s=backlog_s, burst_at_s=burst_at_s, burst_s=burst_s
    )


def small_feed(plan: ReplaySettings | None = None, run: str = "run1") -> ReplayFeed:
    posts = [post(i, f"my phone number {i}", "other" if i == 5 else "sub") for i in range(10)]
    posts.append(post(10, "coffee only"))
    return ReplayFeed(JsonlCorpus(posts), plan or replay_plan(1.0, 3.0, 100.0, PLANTED_POSTS - 1.0), T0, run)


def test_posts_arrive_on_the_replay_clock_stamped_with_their_arrival() -> None:
    feed = small_feed()
    # Rank r arrives at T0 - backlog + r / rate: ranks 0-3 are there at the start.
    got = feed.search("phone", 100, now=T0)
    assert [p.id for p in got.posts] == ["run1-p3", "run1-p2", "run1-p1", "run1-p0"]
    assert [p.created_utc for p in got.posts] == [T0, T0 - 1, T0 - 2, T0 - 3]
    assert got.posts[0].title == "my phone number 3" and got.posts[0].url == "https://r/3"
    later = feed.search("phone", 100, now=T0 + 2.5)
    assert [p.id for p in later.posts][:3] == ["run1-p5", "run1-p4", "run1-p3"]
    assert len(feed.search("phone", 2, now=T0 + 2.5).posts) == 2  # the newest two
    assert feed.search("phone", 100, now=T0 - 10).posts == []  # before the backlog began
    # The coffee post (rank 10) arrives at T0 + 7.
    assert feed.search("coffee", 10, now=T0 + 6.9).posts == []
    assert [p.created_utc for p in feed.search("coffee", 10, now=T0 + 7).posts] == [T0 + 7]


def test_the_planted_burst_arrives_when_planned_and_only_for_its_words() -> None:
    feed = small_feed()  # burst from T0 + 100, one planted post a second
    assert not [p for p in feed.search(DEMO_KEYWORD, 100, now=T0 + 99).posts if "planted" in p.id]
    got = [p for p in feed.search(DEMO_KEYWORD, 100, now=T0 + 102).posts if "planted" in p.id]
    assert [p.id for p in got] == ["run1-planted-002", "run1-planted-001", "run1-planted-000"]
    assert [p.created_utc for p in got] == [T0 + 102, T0 + 101, T0 + 100]
    assert all(p.subreddit == PLANTED_SUBREDDIT for p in got)
    assert len(feed.search(PLANTED_TERM.lower(), 1000, now=T0 + 1000).posts) == PLANTED_POSTS
    assert feed.search("coffee", 100, now=T0 + 1000).posts[0].id == "run1-p10"  # no planted post


def test_a_scope_judges_the_arrival_time_and_a_restart_is_a_new_run() -> None:
    class NotOther:
        def admits(self, p: Post, now: float) -> bool:
            return p.subreddit != "other" and p.created_utc >= now - 2

    feed = small_feed()
    got = feed.search("phone", 100, scope=NotOther(), now=T0 + 2)  # p5 is in r/other
    assert [p.id for p in got.posts] == ["run1-p4", "run1-p3"]
    again = small_feed(run="run2")
    assert {p.id for p in again.search("phone", 100, now=T0).posts}.isdisjoint(
        {p.id for p in feed.search("phone", 100, now=T0).posts}
    )


def test_status_counts_what_has_arrived() -> None:
    feed = small_feed()
    s = feed.status(now=T0 + 2)
    assert (s.run, s.started_at, s.arrived, s.corpus_posts) == ("run1", T0, 6, 11)
    assert s.ends_at == T0 + 7 and s.burst_from == T0 + 100 and s.burst_until == T0 + 100 + PLANTED_POSTS - 1
    assert (s.keyword, s.planted_term, s.planted_posts) == (DEMO_KEYWORD, PLANTED_TERM, PLANTED_POSTS)
    assert feed.status(now=T0 - 100).arrived == 0 and feed.status(now=T0 + 1e6).arrived == 11


def test_planted_posts_differ_and_each_names_the_term_and_the_keyword() -> None:
    texts = planted_texts()
    assert len(texts) == PLANTED_POSTS == len(set(texts))
    for title, body in texts:
        words = re.findall(r"\w+", f"{title} {body}".lower())
        assert PLANTED_TERM.lower() in words and DEMO_KEYWORD in words
    # No other word is in most of them: the burst's emerging term is the product's name.
    counts: dict[str, int] = {}
    for title, body in texts:
        for w in set(re.findall(r"\w+", f"{title} {body}".lower())):
            counts[w] = counts.get(w, 0) + 1
    common = {w for w, n in counts.items() if n > PLANTED_POSTS // 2}
    assert common <= {PLANTED_TERM.lower(), DEMO_KEYWORD, "the", "and", "i", "my", "they", "to", "a"}, common


def test_the_real_corpus_gives_the_monitor_enough_posts_a_minute() -> None:
    path = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    if not path.is_file():
        pytest.skip(f"no corpus at {path}")
    corpus = JsonlCorpus.from_file(path)
    assert not corpus.search(PLANTED_TERM, 1).posts  # the term is made up
    feed = ReplayFeed(corpus, ReplaySettings(), T0)
    got = feed.search(DEMO_KEYWORD, 10_000, now=T0 + 600)
    real = [p for p in got.posts if "planted" not in p.id]
    starts = [T0 - 180 + 60 * m for m in range(13)]
    per_minute = [sum(1 for p in real if start <= p.created_utc < start + 60) for start in starts]
    # The spike test needs 20 posts in a bucket (alert_min_posts); the default rate gives more.
    assert min(per_minute) >= 20, per_minute


def test_sources_serve_the_replay_and_name_it_when_unknown(tmp_path: Path) -> None:
    rows = [{"id": f"x{i}", "title": f"phone {i}", "created_utc": 1_300_000_000 + i} for i in range(5)]
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = PostSources(
        FetcherConfig(SourcesSettings(jsonl_path=path), replay=replay_plan(1.0, 2.0, 0.0, 10.0))
    )
    got = sources.fetch("replay", "phone", 100)
    run = sources.replay().run
    assert got.posts and all(p.id.startswith(f"{run}-") for p in got.posts)
    assert {p.id for p in got.posts} >= {f"{run}-x0", f"{run}-x1"}
    assert sources.replay(restart=True).run != run
    with pytest.raises(SourceConfigError, match="'replay'"):
        sources.fetch("twitter", "phone", 1)


def test_the_monitor_compares_minute_buckets_for_replayed_watches() -> None:
    cfg = MonitorConfig(
        "postgresql://x/y", settings=MonitorSettings(alert_bucket_s=3600), replay=ReplaySettings(bucket_s=60)
    )
    assert cfg.bucket_for("replay") == 60 and cfg.bucket_for("jsonl") == cfg.bucket_for("reddit") == 3600
    assert parse_bucket("1m") == 60


def test_demo_lines_show_the_buckets_and_the_alert() -> None:
    share = {"pct_low": 0.0, "pct_high": 100.0, "count": 1}
    trend = TrendsResponse.model_validate(
        {
            "keyword": "phone",
            "bucket_s": 60,
            "since": 0,
            "buckets": [
                {
                    "start": 1_900_000_020.0,
                    "posts": {"emotion": 40, "sentiment": 40},
                    "shares": {
                        "emotion": [{"label": "anger", "pct": 62.5, **share}],
                        "sentiment": [{"label": "negative", "pct": 80.0, **share}],
                    },
                }
            ],
        }
    )
    lines = trend_lines(trend)
    assert lines[1].split() == ["17:47", "40", "62.5%", "80.0%"]
    alert = AlertOut(
        alert_id="a", keyword="phone", task="emotion", label="anger", bucket_start=1_900_000_020.0,
        bucket_s=60, share=62.5, baseline=20.0, z=4.2, posts=40, baseline_posts=120,
        created_at=1_900_000_100.0, delivery="none", attempts=0,
    )  # fmt: skip
    assert alert_line(alert).startswith("ALERT emotion/anger in the 17:47 bucket: 62.5 % of 40 posts")
    from serve_app.sources.replay import ReplayStatus

    status = small_feed().status(now=T0)
    assert isinstance(status, ReplayStatus)
    assert not DemoOutcome(status, trend, [alert]).done  # one bucket is not a trend yet
    two = trend.model_copy(update={"buckets": trend.buckets * 2})
    assert DemoOutcome(status, two, [alert]).done and not DemoOutcome(status, two, []).done
