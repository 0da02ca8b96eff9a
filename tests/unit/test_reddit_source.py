"""Reddit as it really behaves: pagination that ends, partial answers, post hygiene, User-Agent.

The public client is driven by the local Reddit server (tests/reddit_server.py) and, where a
listing must misbehave in a precise way, by an httpx MockTransport serving listings built
with every field Reddit sends (`make_post`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from serve_app.domain.errors import SourceError
from serve_app.domain.posts import Post, PostFilter, clean_body
from serve_app.sources.corpus import JsonlCorpus
from serve_app.sources.reddit import PAGE, RedditPrawClient, RedditPublicClient, max_pages, user_agent
from tests.reddit_server import CLIENT_ID, CLIENT_SECRET, RedditTestServer, make_post

pytestmark = pytest.mark.unit


def listing(posts: list[dict[str, Any]], after: str | None) -> dict[str, Any]:
    return {
        "kind": "Listing",
        "data": {
            "after": after,
            "before": None,
            "dist": len(posts),
            "modhash": "",
            "geo_filter": "",
            "children": [{"kind": "t3", "data": p} for p in posts],
        },
    }


def mock_client(
    answer: Callable[[httpx.Request], dict[str, Any]], calls: list[httpx.Request], **kw: Any
) -> RedditPublicClient:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=answer(request), headers={"x-ratelimit-remaining": "500"})

    return RedditPublicClient(
        "https://reddit.test", timeout_s=5, sleep=lambda s: None, transport=httpx.MockTransport(handler), **kw
    )


def test_a_repeated_page_ends_the_search_after_at_most_two_extra_requests() -> None:
    """The same page served again with its cursor (the loop that sent 14,501 requests in 3 s)."""
    page = [make_post(i, f"python news {i}") for i in range(PAGE)]
    calls: list[httpx.Request] = []
    got = mock_client(lambda r: listing(page, "t3_p00099"), calls).search("python", 250)
    assert len(got.posts) == PAGE
    assert len(calls) == 2  # the page, and the one that added nothing
    assert got.requests == 2


def test_a_repeated_cursor_ends_the_search_even_when_pages_bring_new_posts() -> None:
    counter = itertools.count()

    def answer(request: httpx.Request) -> dict[str, Any]:
        n = next(counter)
        return listing([make_post(n * 10 + i, f"python {n} {i}") for i in range(10)], "t3_same")

    calls: list[httpx.Request] = []
    got = mock_client(answer, calls).search("python", 1000)
    assert len(calls) == 2  # the second answer repeats the cursor: stop
    assert len(got.posts) == 20


def test_an_endless_listing_stops_at_the_pages_the_limit_needs_plus_one() -> None:
    counter = itertools.count()

    def answer(request: httpx.Request) -> dict[str, Any]:
        n = next(counter)
        # Every other post is a duplicate text: hygiene leaves half out, so pages keep coming.
        posts = [make_post(n * PAGE + i, f"python {n} {i // 2}") for i in range(PAGE)]
        return listing(posts, f"t3_cursor{n}")

    calls: list[httpx.Request] = []
    got = mock_client(answer, calls).search("python", 250)
    assert max_pages(250) == 4
    assert len(calls) == 4  # 3 pages for 250, plus one
    assert len(got.posts) == 200 and got.excluded == {"duplicate": 200}


def test_the_looping_server_ends_too(reddit_server_posts: RedditTestServer) -> None:
    reddit_server_posts.state.faults.loop_cursor = True
    client = RedditPublicClient(reddit_server_posts.url, timeout_s=5)
    got = client.search("python", 250)
    assert len(got.posts) == PAGE
    assert len(reddit_server_posts.state.requests) == 2


@pytest.fixture()
def reddit_server_posts() -> Iterator[RedditTestServer]:
    posts = [make_post(i, f"Post {i} about python", "text") for i in range(300)]
    with RedditTestServer(posts) as srv:
        yield srv


def test_a_later_page_failing_gives_a_partial_answer(reddit_server_posts: RedditTestServer) -> None:
    f = reddit_server_posts.state.faults
    f.after_ok, f.status, f.count = 1, 500, 100
    client = RedditPublicClient(reddit_server_posts.url, timeout_s=5, retries=1, sleep=lambda s: None)
    got = client.search("python", 250)
    assert len(got.posts) == PAGE
    assert got.partial is not None and "page 2 failed" in got.partial and "500" in got.partial


def test_a_first_page_failing_is_still_an_error(reddit_server_posts: RedditTestServer) -> None:
    f = reddit_server_posts.state.faults
    f.status, f.count = 503, 100
    client = RedditPublicClient(reddit_server_posts.url, timeout_s=5, retries=1, sleep=lambda s: None)
    with pytest.raises(SourceError) as err:
        client.search("python", 250)
    assert err.value.kind == "unreachable"


def test_a_near_deadline_gives_a_partial_answer(reddit_server_posts: RedditTestServer) -> None:
    reddit_server_posts.state.faults.delay_s = 0.6
    client = RedditPublicClient(reddit_server_posts.url, timeout_s=5, deadline_s=1.5)
    got = client.search("python", 250)
    assert len(got.posts) == PAGE
    assert got.partial is not None and "deadline" in got.partial


def test_praw_later_page_failing_gives_a_partial_answer(reddit_server_posts: RedditTestServer) -> None:
    f = reddit_server_posts.state.faults
    # The token request is not faulted (POST); the first search page is; the second fails.
    f.after_ok, f.status, f.count = 1, 500, 100
    client = RedditPrawClient(
        CLIENT_ID, CLIENT_SECRET, "python:tests:v0", reddit_server_posts.url, reddit_server_posts.url, 5
    )
    got = client.search("python", 250)
    assert len(got.posts) == PAGE
    assert got.partial is not None and "later page failed" in got.partial


HYGIENE = [
    make_post(0, "An honest opinion about python", "I like it a lot"),
    make_post(1, "Removed body, title stays: python", "[removed]"),
    make_post(2, "Deleted body, python", "[deleted]"),
    make_post(3, "", "[removed]"),  # nothing left: excluded
    make_post(4, "nsfw python", "x", over_18=True),
    make_post(5, "Weekly python thread (mod)", "rules", stickied=True),
    make_post(6, "Buy python hosting", "ad", promoted=True),
    make_post(7, "An honest opinion about python", "I like it a lot"),  # a copy of 0
    make_post(8, "Original python post", "body"),
    make_post(9, "Original python post", "body", crosspost_parent="t3_p00008", subreddit="other"),
    make_post(10, "AN HONEST opinion about   python", "i like it a lot"),  # same text, folded
]


def test_hygiene_rules_and_counts_on_the_public_path() -> None:
    calls: list[httpx.Request] = []
    got = mock_client(lambda r: listing(HYGIENE, None), calls).search("python", 100)
    ids = [p.id for p in got.posts]
    assert ids == ["p00000", "p00001", "p00002", "p00008"]
    assert got.posts[1].body == "" and got.posts[1].title.startswith("Removed body")
    assert got.excluded == {
        "empty": 1,
        "nsfw": 1,
        "stickied": 1,
        "promoted": 1,
        "crosspost": 1,
        "duplicate": 2,
    }
    with_nsfw = mock_client(lambda r: listing(HYGIENE, None), calls, include_nsfw=True).search("python", 100)
    assert "p00004" in [p.id for p in with_nsfw.posts] and "nsfw" not in with_nsfw.excluded


def test_hygiene_counts_a_crosspost_once_whichever_comes_first() -> None:
    f = PostFilter()
    cross = Post("c", "same story", "", "b", 2, 1, "", crosspost_of="o")
    original = Post("o", "same story, original", "", "a", 1, 1, "")
    assert f.admit(cross) is not None
    assert f.admit(original) is None and f.counts() == {"crosspost": 1}
    assert f.admit(cross) is None and f.counts() == {"crosspost": 1}  # a repeat is not an exclusion


def test_hygiene_applies_to_the_local_corpus_too() -> None:
    posts = [
        Post("a", "python one", "[deleted]", "s", 3, 1, ""),
        Post("b", "python one", "", "s", 2, 1, ""),  # the same text once the body is dropped
        Post("c", "python two", "x", "s", 1, 1, "", stickied=True),
    ]
    got = JsonlCorpus(posts).search("python", 10)
    assert [p.id for p in got.posts] == ["a"]
    assert got.excluded == {"duplicate": 1, "stickied": 1}


def test_removed_markers() -> None:
    assert clean_body(" [removed] ") == "" and clean_body("[Deleted]") == ""
    assert clean_body("[removed] but then text") == "[removed] but then text"


def test_user_agent_is_in_the_form_reddit_asks_for(reddit_server_posts: RedditTestServer) -> None:
    ua = user_agent("emotion-monitor", "0.1.0", "/u/someone")
    assert ua == "python:emotion-monitor:v0.1.0 (by /u/someone)"
    RedditPublicClient(reddit_server_posts.url, ua, timeout_s=5).search("python", 5)
    RedditPrawClient(
        CLIENT_ID, CLIENT_SECRET, ua, reddit_server_posts.url, reddit_server_posts.url, 5
    ).search("python", 5)
    agents = reddit_server_posts.state.user_agents
    assert agents[0] == ua
    assert len(agents) == 2 and agents[1].startswith(ua + " PRAW/")  # praw appends its own version


def test_a_realistic_listing_parses(tmp_path: Any) -> None:
    raw = json.dumps(listing([make_post(0, "python", "body", link_flair_text="News")], None))
    calls: list[httpx.Request] = []
    got = mock_client(lambda r: json.loads(raw), calls).search("python", 5)
    p = got.posts[0]
    assert (p.id, p.subreddit, p.nsfw, p.stickied, p.crosspost_of) == ("p00000", "test", False, False, None)
    assert p.url == "https://reddit.test/r/test/comments/p00000/post/"
