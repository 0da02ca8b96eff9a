"""Issue 27, scope and comments: what reaches Reddit (both clients, asserted on the local
server's recorded requests), the corpus's own filters, comments from a recorded real
listing within the request budget, counting over posts/comments/both, and 422s."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app.config.settings import SourcesSettings
from serve_app.domain.posts import FetchResult, Post
from serve_app.domain.question import Question
from serve_app.domain.records import PredictionRow, ServedModels, TaskModel
from serve_app.domain.schemas import AnalyzeRequest, WatchRequest
from serve_app.domain.scope import CountOver, Scope, window_covering
from serve_app.domain.tasks import TASKS
from serve_app.flow.aggregate import summarize
from serve_app.flow.analysis import select_posts
from serve_app.sources.comments import CORPUS_HAS_NO_COMMENTS, CommentPlan, fetch_comments, with_comments
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.post_sources import FetcherConfig, PostSources
from serve_app.sources.reddit import RedditPrawClient, RedditPublicClient
from serve_app.sources.request_budget import BudgetConfig, RequestBudget
from tests import reddit_server
from tests.reddit_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    RedditTestServer,
    comment_listing,
    make_post,
    recorded_comments,
)

pytestmark = pytest.mark.unit

NOW = 1_760_000_000.0
SUBS = ("python", "rust", "java")


def _posts(n: int = 300) -> list[dict[str, Any]]:
    # One post a minute back from NOW, cycling through three subreddits.
    return [
        make_post(i, f"python news {i}", "body", SUBS[i % 3], created_utc=NOW - i * 60, num_comments=i % 7)
        for i in range(n)
    ]


@pytest.fixture()
def server() -> Iterator[RedditTestServer]:
    with RedditTestServer(_posts()) as srv:
        srv.state.now = NOW
        yield srv


def _public(srv: RedditTestServer, **kw: Any) -> RedditPublicClient:
    return RedditPublicClient(srv.url, timeout_s=5, sleep=lambda s: None, **kw)


def _praw(srv: RedditTestServer, **kw: Any) -> RedditPrawClient:
    return RedditPrawClient(CLIENT_ID, CLIENT_SECRET, "python:tests:v0", srv.url, srv.url, 5, **kw)


def _searches(srv: RedditTestServer) -> list[tuple[str, dict[str, str]]]:
    out = []
    for raw in srv.state.requests:
        url = urlparse(raw)
        if "/search" in url.path:
            out.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
    return out


CLIENTS = ["public", "praw"]


def _client(kind: str, srv: RedditTestServer, **kw: Any) -> RedditPublicClient | RedditPrawClient:
    return _public(srv, **kw) if kind == "public" else _praw(srv, **kw)


# ------------------------------------------------------------------ scope reaches Reddit


@pytest.mark.parametrize("kind", CLIENTS)
def test_one_subreddit_window_and_sort_reach_reddit_as_its_search_takes_them(
    kind: str, server: RedditTestServer
) -> None:
    got = _client(kind, server).search("python", 50, scope=Scope(("python",), time_window="week", sort="top"))
    path, params = _searches(server)[0]
    assert path.removesuffix(".json").rstrip("/") == "/r/python/search"
    assert (
        params["restrict_sr"].lower() in ("1", "true") and params["t"] == "week" and params["sort"] == "top"
    )
    assert params["q"] == "python"
    assert got.posts and {p.subreddit for p in got.posts} == {"python"}
    scores = [p.score for p in got.posts]
    assert scores == sorted(scores, reverse=True)  # Reddit's (the server's) top order, kept


@pytest.mark.parametrize("kind", CLIENTS)
def test_several_subreddits_and_exclusions(kind: str, server: RedditTestServer) -> None:
    client = _client(kind, server)
    got = client.search("python", 40, scope=Scope(("rust", "python"), sort="new"))
    path, params = _searches(server)[0]
    assert path.removesuffix(".json").rstrip("/") == "/r/python+rust/search"
    assert params["sort"] == "new" and params.get("t", "all") == "all"
    assert {p.subreddit for p in got.posts} == {"python", "rust"}
    got = client.search("python", 40, scope=Scope(exclude_subreddits=("java",)))
    path, params = _searches(server)[-1]
    assert path.removesuffix(".json").rstrip("/") in ("/search", "/r/all/search")
    assert params["q"] == "python -subreddit:java" and params["sort"] == "relevance"
    assert params.get("restrict_sr", "false").lower() in ("false", "0")
    assert "java" not in {p.subreddit for p in got.posts} and len(got.posts) == 40


@pytest.mark.parametrize("kind", CLIENTS)
def test_since_and_until_choose_a_covering_t_and_filter_client_side(
    kind: str, server: RedditTestServer
) -> None:
    import time

    now = time.time()
    server.state.now = now
    server.state.posts = [
        make_post(i, f"python {i}", "b", SUBS[i % 3], created_utc=now - i * 600) for i in range(100)
    ]
    since, until = now - 5 * 3600, now - 3600  # 1 to 5 hours ago
    got = _client(kind, server).search("python", 100, scope=Scope(since=since, until=until, sort="new"))
    _, params = _searches(server)[0]
    assert params["t"] == "day"  # the narrowest window that reaches back five hours
    assert got.posts and all(since <= p.created_utc < until for p in got.posts)
    assert len(got.posts) == 24  # posts 6..29 (every ten minutes)
    assert got.excluded.get("out_of_scope", 0) >= 6  # the newer ones, read and left out


def test_window_covering_picks_the_narrowest_that_reaches_back() -> None:
    assert window_covering(NOW - 60, NOW) == "hour"
    assert window_covering(NOW - 2 * 86_400, NOW) == "week"
    assert window_covering(NOW - 29 * 86_400, NOW) == "year"  # a month may be 28 days
    assert window_covering(NOW - 400 * 86_400, NOW) == "all"


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    "scope",
    [
        Scope(("python",)),
        Scope(("python", "rust"), sort="top", time_window="month"),
        Scope(exclude_subreddits=("java",), sort="comments"),
        Scope(since=NOW - 3 * 3600, until=NOW - 3600, sort="new"),
        Scope(since=NOW - 3 * 3600, sort="relevance"),
    ],
)
def test_a_scoped_search_costs_no_more_requests_than_an_unscoped_one(
    kind: str, scope: Scope, server: RedditTestServer
) -> None:
    for limit in (50, 150, 250):
        server.state.requests.clear()
        _client(kind, server).search("python", limit)
        unscoped = len(_searches(server))
        server.state.requests.clear()
        _client(kind, server).search("python", limit, scope=scope)
        scoped = len(_searches(server))
        assert 1 <= scoped <= unscoped, (limit, scoped, unscoped)


# ------------------------------------------------------------------ the local corpus


def _corpus() -> JsonlCorpus:
    posts = [
        Post(
            f"c{i}",
            f"coffee talk {i}",
            "text",
            ("Coffee", "tea", "Cooking")[i % 3],
            NOW - i * 3600,
            i % 10,
            "",
            num_comments=(i * 7) % 11,
        )
        for i in range(60)
    ]
    return JsonlCorpus(posts)


def test_the_corpus_filters_by_subreddit_case_insensitively() -> None:
    c = _corpus()
    got = c.search("coffee", 100, scope=Scope(("coffee", "tea")), now=NOW)
    assert {p.subreddit for p in got.posts} == {"Coffee", "tea"} and len(got.posts) == 40
    got = c.search("coffee", 100, scope=Scope(exclude_subreddits=("coffee",)), now=NOW)
    assert "Coffee" not in {p.subreddit for p in got.posts} and len(got.posts) == 40


def test_the_corpus_filters_by_time() -> None:
    c = _corpus()
    day = c.search("coffee", 100, scope=Scope(time_window="day"), now=NOW)
    assert [p.id for p in day.posts] == [f"c{i}" for i in range(25)]  # 0..24 hours back
    since, until = NOW - 10 * 3600, NOW - 5 * 3600
    got = c.search("coffee", 100, scope=Scope(since=since, until=until), now=NOW)
    assert [p.id for p in got.posts] == [f"c{i}" for i in range(6, 11)]


def test_the_corpus_sorts_top_and_by_comments() -> None:
    c = _corpus()
    top = c.search("coffee", 10, scope=Scope(sort="top"), now=NOW)
    assert [p.score for p in top.posts] == [9] * 6 + [8] * 4
    assert [p.created_utc for p in top.posts[:6]] == sorted(
        (p.created_utc for p in top.posts[:6]), reverse=True
    )
    most = c.search("coffee", 5, scope=Scope(sort="comments"), now=NOW)
    assert [p.num_comments for p in most.posts] == [10] * 5


@pytest.mark.parametrize(
    "scope",
    [Scope(("nosuchsub",)), Scope(time_window="hour"), Scope(since=NOW + 10, until=NOW + 20)],
)
def test_an_empty_scope_is_a_valid_empty_result(scope: Scope) -> None:
    got = _corpus().search("coffee", 100, scope=scope, now=NOW + 10 * 3600)  # newest: 10 h old
    assert got == FetchResult([], {})


def test_the_corpus_has_no_comments_and_says_so(tmp_path: Any) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text('{"id": "a", "title": "coffee", "subreddit": "Coffee", "created_utc": 1}\n')
    got = PostSources(FetcherConfig(SourcesSettings(jsonl_path=path))).fetch(
        "jsonl", "coffee", 10, include_comments=3
    )
    assert [p.id for p in got.posts] == ["a"] and got.partial is None
    assert (
        got.comments is not None
        and got.comments.comments == 0
        and got.comments.note == CORPUS_HAS_NO_COMMENTS
    )


# ------------------------------------------------------------------ comments


@pytest.fixture()
def recorded() -> list[dict[str, Any]]:
    listing = recorded_comments()
    if listing is None:
        pytest.skip("the recorded comment listing (../shared/data/reddit_listings) is not on this machine")
    return listing


def _with_threads(srv: RedditTestServer, recorded: list[dict[str, Any]]) -> None:
    for p in srv.state.posts:
        srv.state.comments[p["id"]] = comment_listing(recorded, p)


def _comment_requests(srv: RedditTestServer) -> list[tuple[str, dict[str, str]]]:
    out = []
    for raw in srv.state.requests:
        url = urlparse(raw)
        if url.path.startswith("/comments/"):
            out.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
    return out


@pytest.mark.parametrize("kind", CLIENTS)
def test_top_comments_of_the_k_most_relevant_posts(
    kind: str, server: RedditTestServer, recorded: list[dict[str, Any]]
) -> None:
    _with_threads(server, recorded)
    client = _client(kind, server)
    found = client.search("python", 10)
    got = fetch_comments(client, found.posts, CommentPlan(posts=3, per_post=5, total=100))
    asked = _comment_requests(server)
    assert [path.removesuffix(".json").rstrip("/") for path, _ in asked] == [
        f"/comments/{p.id}" for p in found.posts[:3]
    ]
    assert all(q["limit"] == "5" and q["sort"] == "top" for _, q in asked)
    if kind == "public":
        assert all(q["depth"] == "1" for _, q in asked) and got.requests == 3
    assert got.posts_read == 3 and got.partial is None
    assert len(got.comments) == 15 and all(c.kind == "comment" and c.title == "" for c in got.comments)
    assert [c.parent_id for c in got.comments] == [p.id for p in found.posts[:3] for _ in range(5)]
    first = got.comments[0]
    # The recorded thread's top comment by score (1438 points), now under the first post.
    assert first.score == 1438 and first.id.startswith(found.posts[0].id + "_")
    assert first.body and first.subreddit == found.posts[0].subreddit


def test_comments_are_bounded_in_total(server: RedditTestServer, recorded: list[dict[str, Any]]) -> None:
    _with_threads(server, recorded)
    client = _public(server)
    found = client.search("python", 10)
    got = fetch_comments(client, found.posts, CommentPlan(posts=10, per_post=4, total=10))
    assert len(got.comments) == 10 and got.posts_read == 3  # 4 + 4 + 2, then the total is reached
    assert _comment_requests(server)[-1][1]["limit"] == "2"


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_budget_running_out_mid_way_gives_a_partial_answer(
    kind: str, server: RedditTestServer, recorded: list[dict[str, Any]]
) -> None:
    _with_threads(server, recorded)
    # Burst 4, practically no refill: praw's token request, the search, then two comment pages.
    burst = 4 if kind == "praw" else 3
    budget = RequestBudget(BudgetConfig(per_min=0.001, burst=burst, reserve=0, key="test"))
    client = _client(kind, server, budget=budget)
    found = client.search("python", 10)
    got = fetch_comments(client, found.posts, CommentPlan(posts=5, per_post=3, total=100))
    assert got.posts_read == 2 and len(got.comments) == 6
    assert got.partial is not None and "2 of 5 posts" in got.partial and "budget" in got.partial
    assert len(_comment_requests(server)) == 2  # the refused page was never sent
    merged = with_comments(found, got, 5)
    assert merged.partial == got.partial and merged.comments is not None
    assert merged.comments.posts_read == 2 and merged.comments.comments == 6
    assert [p.kind for p in merged.posts] == ["post"] * 10 + ["comment"] * 6


def test_praw_spends_one_token_per_request_when_the_server_closes_late() -> None:
    """The flake behind the test above: prawcore's token POST asks `Connection: close`; a
    server slow to close the socket (a loaded machine, made certain here) must say so in its
    answer, or the client reuses the dying socket and praw's retry spends a second token."""

    class ClosesLate(reddit_server._Handler):
        def finish(self) -> None:
            if self.close_connection:
                time.sleep(0.3)
            super().finish()

    srv = RedditTestServer(_posts())
    srv.httpd.RequestHandlerClass = ClosesLate
    with srv:
        srv.state.now = NOW
        budget = RequestBudget(BudgetConfig(per_min=0.001, burst=10, reserve=0, key="test"))
        taken: list[int] = []
        acquire = budget.acquire

        def counted(*args: Any, **kwargs: Any) -> Any:
            taken.append(1)
            return acquire(*args, **kwargs)

        budget.acquire = counted  # type: ignore[method-assign]
        found = _praw(srv, budget=budget).search("python", 10)
    assert len(found.posts) == 10
    assert len(taken) == 2  # the token request and the search, no retry


def test_a_near_deadline_stops_comments_with_a_partial_answer(
    server: RedditTestServer, recorded: list[dict[str, Any]]
) -> None:
    _with_threads(server, recorded)
    client = _public(server)
    found = client.search("python", 10)
    server.state.faults.delay_s = 0.6
    got = fetch_comments(client, found.posts, CommentPlan(posts=5), deadline_s=2.0)
    assert 1 <= got.posts_read < 5 and got.partial is not None and "deadline" in got.partial


def test_a_failed_comment_page_keeps_what_was_fetched(
    server: RedditTestServer, recorded: list[dict[str, Any]]
) -> None:
    _with_threads(server, recorded)
    client = _public(server, retries=0)
    found = client.search("python", 10)
    f = server.state.faults
    f.after_ok, f.status, f.count = 1, 500, 10
    got = fetch_comments(client, found.posts, CommentPlan(posts=3, per_post=2))
    assert got.posts_read == 1 and len(got.comments) == 2 and got.partial is not None


# ------------------------------------------------------------------ counting over posts, comments, both


def _models() -> ServedModels:
    return ServedModels("emotion", {"emotion": TaskModel("v1", TASKS["emotion"].labels, ("en",), 128, "/m")})


def _row(label: str) -> PredictionRow:
    labels = TASKS["emotion"].labels
    return {
        "label": label,
        "confidence": 0.9,
        "scores": {x: 0.9 if x == label else 0.1 / (len(labels) - 1) for x in labels},
    }


@pytest.mark.parametrize(
    ("count_over", "joy", "anger"), [("posts", 100.0, 0.0), ("comments", 0.0, 100.0), ("both", 40.0, 60.0)]
)
def test_the_breakdown_counts_posts_comments_or_both(count_over: Any, joy: float, anger: float) -> None:
    posts = [Post(f"p{i}", f"post {i}", "", "s", NOW, 1, "", lang="en") for i in range(4)]
    comments = [
        Post(f"c{i}", "", f"comment {i}", "s", NOW, 1, "", lang="en", kind="comment", parent_id="p0")
        for i in range(6)
    ]
    fetched = FetchResult(posts + comments)
    q = Question("kw", 10, "reddit", ("emotion",), 0.8, include_comments=1, count_over=count_over)
    sel = select_posts(fetched, _models(), q)
    labels = {p.id: ("joy" if p.kind == "post" else "anger") for p in fetched.posts}
    preds = {"emotion": [_row(labels[fetched.posts[i].id]) for i in sel.keep]}
    shares = {r["label"]: r["pct"] for r in summarize("kw", preds, False, {}).breakdowns["agg"]}
    assert shares.get("joy", 0.0) == pytest.approx(joy) and shares.get("anger", 0.0) == pytest.approx(anger)
    left_out = 10 - len(sel.keep)
    assert sel.excluded.get("not_counted", 0) == left_out


# ------------------------------------------------------------------ the cache key


def test_the_scope_is_part_of_the_cache_key_and_the_default_keeps_old_keys() -> None:
    base = Question("kw", 10, "reddit", ("emotion",), 0.8)
    versions = {"emotion": "v1"}
    from serve_app.stores.cache import analysis_key

    assert base.key(versions) == analysis_key("kw", 10, "reddit", versions, negative_threshold=0.8)
    cases: list[tuple[Scope, int, CountOver]] = [
        (Scope(), 0, "both"),
        (Scope(("python",)), 0, "both"),
        (Scope(exclude_subreddits=("python",)), 0, "both"),
        (Scope(time_window="day"), 0, "both"),
        (Scope(since=1.0), 0, "both"),
        (Scope(until=2.0), 0, "both"),
        (Scope(sort="new"), 0, "both"),
        (Scope(), 3, "both"),
        (Scope(), 3, "posts"),
    ]
    keys = {
        Question("kw", 10, "reddit", ("emotion",), 0.8, scope=s, include_comments=k, count_over=c).key(
            versions
        )
        for s, k, c in cases
    }
    assert len(keys) == 9


# ------------------------------------------------------------------ 422s naming the field

APP = FastAPI()


@APP.post("/analyze")
def _analyze(req: AnalyzeRequest) -> dict[str, Any]:
    return {"scope": req.scope().key_part()}


@APP.post("/watch")
def _watch(req: WatchRequest) -> dict[str, Any]:
    return {"sort": req.sort}


BAD = [
    ({"subreddits": ["ab"]}, "subreddits", "'ab'"),
    ({"subreddits": ["no spaces"]}, "subreddits", "'no spaces'"),
    ({"subreddits": ["x" * 22]}, "subreddits", "x" * 22),
    ({"subreddits": "python"}, "subreddits", ""),
    ({"exclude_subreddits": ["r/bad-name"]}, "exclude_subreddits", "'r/bad-name'"),
    ({"subreddits": ["python"], "exclude_subreddits": ["Python"]}, "exclude_subreddits", "python"),
    ({"time_window": "decade"}, "time_window", ""),
    ({"time_window": "day", "since": "2024-01-01T00:00:00Z"}, "since", "time_window"),
    ({"since": "yesterday"}, "since", ""),
    ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until", "after since"),
    ({"until": "0001-01-01T00:00:00+05:00"}, "until", "out of range"),
    ({"sort": "hot"}, "sort", ""),
    ({"include_comments": -1}, "include_comments", ""),
    ({"include_comments": 101}, "include_comments", ""),
    ({"include_comments": "many"}, "include_comments", ""),
    ({"count_over": "votes"}, "count_over", ""),
    ({"count_over": "comments"}, "count_over", "include_comments"),
]


@pytest.mark.parametrize(("extra", "field", "named"), BAD)
def test_bad_values_are_422s_naming_the_field(extra: dict[str, Any], field: str, named: str) -> None:
    with TestClient(APP) as c:
        r = c.post("/analyze", json={"keyword": "python", **extra})
        assert r.status_code == 422, r.text
        errors = r.json()["detail"]
        assert any(e["loc"][-1] == field or field in e["loc"] for e in errors), errors
        assert any(named in e["msg"] for e in errors), errors
        if field not in ("include_comments", "count_over"):
            w = c.post("/watch", json={"keyword": "python", "every_s": 60, **extra})
            assert w.status_code == 422, w.text


def test_good_values_are_normalised() -> None:
    with TestClient(APP) as c:
        r = c.post(
            "/analyze",
            json={
                "keyword": "python",
                "subreddits": ["r/Python", "/r/rust/", "PYTHON"],
                "sort": "top",
                "since": "2024-01-01T00:00:00",
                "until": "2024-01-02T00:00:00+00:00",
            },
        )
        assert r.status_code == 200, r.text
        since = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
        assert r.json()["scope"] == f"sr=python+rust;-sr=;t=;since={since};until={since + 86400};sort=top"
        assert c.post("/watch", json={"keyword": "python", "every_s": 60}).json()["sort"] == "new"
