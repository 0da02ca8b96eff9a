"""Issue 27 through the whole Serve graph: a scoped `/analyze` with comments reaches the
local Reddit server as Reddit expects, echoes its scope, keeps scopes apart in the cache and
records its texts' kinds; the corpus answers a scope with no match with a valid empty answer."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import httpx
import psycopg
import pytest
import redis

from serve_app.domain.posts import Post
from serve_app.domain.question import Question
from serve_app.domain.records import PredictionRow
from serve_app.domain.schemas import Analysis
from serve_app.domain.scope import Scope
from serve_app.stores.history import REC_PREFIX, HistorySync, make_record, store_record
from tests.reddit_server import RedditTestServer, comment_listing, recorded_comments
from tooling.cli.analyze import format_analysis

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture()
def client(serve_url: str) -> httpx.Client:
    return httpx.Client(base_url=serve_url, timeout=120)


def _params(raw: str) -> tuple[str, dict[str, str]]:
    url = urlparse(raw)
    return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


def test_a_scoped_analysis_with_comments(
    client: httpx.Client, reddit_server: RedditTestServer, clean_cache: redis.Redis
) -> None:
    recorded = recorded_comments()
    if recorded is None:
        pytest.skip("the recorded comment listing (../shared/data/reddit_listings) is not on this machine")
    st = reddit_server.state
    for p in st.posts:
        st.comments[p["id"]] = comment_listing(recorded, p)
    st.requests.clear()
    body = {
        "keyword": "python",
        "limit": 20,
        "source": "reddit",
        "subreddits": ["r/Test"],
        "time_window": "all",  # the session server's posts are from 2023
        "sort": "top",
        "include_comments": 2,
    }
    try:
        r = client.post("/analyze", json=body)
        sent = list(st.requests)  # what the first analysis asked Reddit
        # Counted over posts only: another answer (and another cache entry).
        posts_only = client.post("/analyze", json={**body, "count_over": "posts"}).json()
    finally:
        st.comments.clear()
    assert r.status_code == 200, r.text
    data = r.json()
    searches = [_params(x) for x in sent if "/search" in x]
    assert searches and all(path == "/r/test/search.json" for path, _ in searches)
    assert all(q["restrict_sr"] == "1" and q["t"] == "all" and q["sort"] == "top" for _, q in searches)
    pages = [_params(x) for x in sent if x.startswith("/comments/")]
    assert len(pages) == 2 and all(q["sort"] == "top" and q["depth"] == "1" for _, q in pages)
    assert data["scope"]["subreddits"] == ["test"] and data["scope"]["sort"] == "top"
    assert data["scope"]["include_comments"] == 2 and data["scope"]["count_over"] == "both"
    c = data["comments"]
    assert c["posts_asked"] == 2 and c["posts_read"] == 2 and c["requests"] == 2 and c["comments"] == 40
    assert data["count"] == 60 and data["scored"] <= 60 and data["partial"] is False
    assert any(line.startswith("scope: r/test") for line in format_analysis(data))
    assert posts_only["source"] == "inference" and posts_only["scored"] <= 20
    assert posts_only["excluded_reasons"].get("not_counted", 0) >= 1, posts_only
    # The history record keeps the scope and each text's kind and parent.
    # Pending or already synced (a synced record stays for its retention).
    records = [json.loads(clean_cache.get(k) or b"{}") for k in clean_cache.scan_iter(REC_PREFIX + "*")]
    rec = next(r for r in records if r.get("scope", {}).get("count_over") == "both")
    assert rec["scope"]["subreddits"] == ["test"] and rec["scope"]["include_comments"] == 2
    kinds = [p["kind"] for p in rec["posts"]]
    assert kinds.count("post") == 20 and kinds.count("comment") == 40
    assert {p["parent_id"] for p in rec["posts"] if p["kind"] == "comment"} <= {
        p["id"] for p in rec["posts"] if p["kind"] == "post"
    }


def test_a_corpus_scope_without_posts_is_a_valid_empty_answer(
    client: httpx.Client, clean_cache: redis.Redis
) -> None:
    body = {"keyword": "coffee", "limit": 30, "source": "jsonl", "include_comments": 3}
    full = client.post("/analyze", json=body).json()
    assert full["count"] == 30 and full["comments"]["note"].startswith("the local corpus holds posts only")
    only = client.post("/analyze", json={**body, "subreddits": ["coffee"]}).json()
    assert 0 < only["count"] <= 30 and only["scope"]["subreddits"] == ["coffee"]
    none = client.post("/analyze", json={**body, "subreddits": ["coffee"], "time_window": "day"})
    assert none.status_code == 200, none.text  # the corpus ends in 2013: nothing in the past day
    assert none.json()["count"] == 0 and none.json()["scored"] == 0


def test_bad_scope_values_are_422s_naming_them(client: httpx.Client) -> None:
    r = client.post("/analyze", json={"keyword": "x", "subreddits": ["python", "no!"]})
    assert r.status_code == 422 and "'no!'" in r.text and "subreddits" in r.text
    r = client.post("/analyze", json={"keyword": "x", "time_window": "day", "until": "2024-01-01T00:00:00Z"})
    assert r.status_code == 422 and "until" in r.text


def test_scope_and_comment_kinds_reach_postgresql(clean_history: tuple[str, redis.Redis]) -> None:
    url, r = clean_history
    posts = [
        Post("p1", "python is great", "", "python", T0, 5, ""),
        Post("c1", "", "agreed", "python", T0 + 1, 2, "", kind="comment", parent_id="p1"),
        Post("c2", "", "not really", "python", T0 + 2, 1, "", kind="comment", parent_id="p1"),
    ]
    preds: dict[str, list[PredictionRow]] = {
        "emotion": [
            {"label": lab, "confidence": 0.9, "scores": {lab: 0.9}} for lab in ("joy", "joy", "anger")
        ]
    }
    scope = Scope(("Python",), ("java",), None, T0 - 86_400, T0 + 60, "top")
    q = Question(
        "Python", 10, "reddit", ("emotion",), 0.8, scope=scope, include_comments=1, count_over="both"
    )
    analysis = Analysis.model_validate(
        {
            "keyword": "Python",
            "count": 3,
            "tasks": ["emotion"],
            "model_versions": {"emotion": "v1"},
            "model_version": "v1",
            "post_source": "reddit",
        }
    )
    rec = make_record(q, analysis, posts, preds, created_at=T0)
    kinds_in_record = [p["kind"] for p in rec["posts"]]
    assert rec["scope"]["subreddits"] == ["python"] and kinds_in_record == ["post", "comment", "comment"]
    old = make_record(
        Question("Python", 10, "reddit", ("emotion",), 0.8),
        analysis,
        posts[:1],
        {"emotion": preds["emotion"][:1]},
        created_at=T0 + 5,
    )
    store_record(r, rec)
    store_record(r, old)
    sync = HistorySync(r, url)
    while sync.pending():
        sync.sync_batch()
    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT subreddits, exclude_subreddits, time_window, extract(epoch FROM since), sort,"
            " include_comments, count_over, n_comments FROM queries WHERE query_id = %s",
            (rec["query_id"],),
        ).fetchone()
        kinds: dict[str, str] = dict(
            c.execute("SELECT post_id, kind || ':' || coalesce(parent_id, '') FROM posts").fetchall()
        )
        scoped: dict[str, bool] = dict(c.execute("SELECT query_id, unscoped FROM v_query_scope").fetchall())
        by_kind = sorted(c.execute("SELECT kind, label, texts FROM v_labels_by_kind").fetchall())
    assert row is not None
    assert row[:3] == (["python"], ["java"], None) and float(row[3]) == T0 - 86_400
    assert row[4:] == ("top", 1, "both", 2)
    assert kinds == {"p1": "post:", "c1": "comment:p1", "c2": "comment:p1"}
    assert scoped == {rec["query_id"]: False, old["query_id"]: True}
    assert by_kind == [("comment", "anger", 1), ("comment", "joy", 1), ("post", "joy", 2)]


def test_a_watch_keeps_its_scope(client: httpx.Client) -> None:
    body = {"keyword": "scoped kettle", "every_s": 600, "source": "jsonl", "subreddits": ["r/Coffee", "tea"]}
    r = client.post("/watch", json={**body, "time_window": "week"})
    try:
        assert r.status_code == 201, r.text
        scope = r.json()["scope"]
        assert scope["subreddits"] == ["coffee", "tea"] and scope["time_window"] == "week"
        assert scope["sort"] == "new"  # a monitor wants the newest posts
        listed = [w for w in client.get("/watch").json()["watches"] if w["keyword"] == "scoped kettle"]
        assert listed[0]["scope"] == scope
        bad = client.post("/watch", json={**body, "exclude_subreddits": ["x"]})
        assert bad.status_code == 422 and "exclude_subreddits" in bad.text and "'x'" in bad.text
    finally:
        client.delete("/watch/scoped kettle")
