"""Comments as texts of their own (issue 27): the top comments of the K most relevant posts.

Reddit's comment listing is `GET /comments/<post_id>.json?limit=&sort=top&depth=1` (praw:
`submission.comments` with `comment_sort = "top"`), answered as a two-element array of
listings: the post (`t3`), then its comment tree (`t1` comments, `more` stubs). Only
top-level comments are taken, at most `per_post` per post and `total` in all; removed,
deleted, stickied and repeated (within one thread) comments are left out by the same post
hygiene as posts.

Each comment page is one request from the shared Reddit budget. When the budget refuses a
token before the deadline, or the deadline comes near, the comments fetched so far are
kept and the result says why it stopped (`CommentsResult.partial`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from serve_app.domain.errors import SourceError
from serve_app.domain.posts import CommentStats, FetchResult, Post, PostFilter
from serve_app.sources.reddit import RedditPrawClient, RedditPublicClient, _call_context, _praw_error
from serve_app.sources.request_budget import Priority

CORPUS_HAS_NO_COMMENTS = "the local corpus holds posts only: no comments were added"


@dataclass(frozen=True)
class CommentPlan:
    """How many comments one analysis may add."""

    posts: int = 0  # the K most relevant posts whose comments are read (0: none)
    per_post: int = 20
    total: int = 500


@dataclass(frozen=True)
class CommentsResult:
    comments: list[Post]
    posts_read: int  # posts whose comment page was fetched
    requests: int
    excluded: dict[str, int] = field(default_factory=dict)
    partial: str | None = None


def comment_from_reddit(d: dict[str, Any], parent: Post, base_url: str) -> Post:
    """A comment (a listing child's `data`, or a praw Comment's attributes) as a text."""
    permalink = str(d.get("permalink") or "")
    return Post(
        id=str(d.get("id", "")),
        title="",
        body=str(d.get("body") or ""),
        subreddit=str(d.get("subreddit") or parent.subreddit),
        created_utc=float(d.get("created_utc") or 0),
        score=int(d.get("score") or 0),
        url=f"{base_url.rstrip('/')}{permalink}" if permalink.startswith("/") else parent.url,
        stickied=bool(d.get("stickied")),
        kind="comment",
        parent_id=parent.id,
    )


def top_level_comments(payload: Any) -> list[dict[str, Any]]:
    """The top-level `t1` children's data of a comment listing response (a 2-element array)."""
    if not isinstance(payload, list) or len(payload) != 2:
        raise SourceError("reddit", "unreachable", "comments answered with something that is not 2 listings")
    try:
        children = payload[1]["data"]["children"] or []
    except (KeyError, TypeError) as exc:
        raise SourceError("reddit", "unreachable", f"comment listing without children ({exc!r})") from None
    return [c["data"] for c in children if isinstance(c, dict) and c.get("kind") == "t1" and c.get("data")]


class CommentCollector:
    """Posts in, one comment page each, until K posts, the total, the budget or the deadline."""

    def __init__(
        self, plan: CommentPlan, deadline: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.plan = plan
        self.deadline = deadline
        self.clock = clock
        self.comments: list[Post] = []
        self.excluded: dict[str, int] = {}
        self.posts_read = 0
        self.requests = 0
        self.partial: str | None = None
        self._slowest = 0.0

    def targets(self, posts: Sequence[Post]) -> list[Post]:
        """The K most relevant posts: the first K of the source's order."""
        return [p for p in posts if p.kind == "post"][: self.plan.posts]

    def run(self, posts: Sequence[Post], fetch_page: Callable[[Post, int], list[Post]]) -> None:
        """`fetch_page(post, limit)` sends one request and returns the post's top-level comments."""
        targets = self.targets(posts)
        for n, post in enumerate(targets):
            room = self.plan.total - len(self.comments)
            if room <= 0:
                break
            if self.clock() + max(1.0, self._slowest) > self.deadline:
                self.partial = f"the deadline came near after the comments of {n} of {len(targets)} posts"
                break
            started = self.clock()
            try:
                rows = fetch_page(post, min(self.plan.per_post, room))
            except SourceError as exc:
                self.partial = f"comments of {n} of {len(targets)} posts fetched ({exc.message})"
                break
            self._slowest = max(self._slowest, self.clock() - started)
            self.requests += 1  # pages answered (the public client counts what it sent itself)
            self.posts_read += 1
            self.add(post, rows, room)

    def add(self, post: Post, rows: list[Post], room: int) -> None:
        hygiene = PostFilter()  # per thread: "this" under two posts is two opinions
        kept: list[Post] = []
        for c in rows:
            admitted = hygiene.admit(c) if c.id else None
            if admitted is not None:
                kept.append(admitted)
            if len(kept) >= min(self.plan.per_post, room):
                break
        self.comments.extend(kept)
        for reason, n in hygiene.counts().items():
            self.excluded[reason] = self.excluded.get(reason, 0) + n

    def result(self) -> CommentsResult:
        return CommentsResult(self.comments, self.posts_read, self.requests, self.excluded, self.partial)


def fetch_comments(
    client: RedditPublicClient | RedditPrawClient,
    posts: Sequence[Post],
    plan: CommentPlan,
    priority: Priority = "user",
    deadline_s: float = 25.0,
) -> CommentsResult:
    """The comments of the first `plan.posts` posts, through either Reddit client."""
    if plan.posts <= 0 or not posts:
        return CommentsResult([], 0, 0)
    collector = CommentCollector(plan, time.monotonic() + deadline_s)
    if isinstance(client, RedditPublicClient):
        before = client.requests
        collector.run(posts, _public_page(client, priority, collector.deadline))
        return dataclasses.replace(collector.result(), requests=client.requests - before)
    with _call_context(priority, time.time() + deadline_s):
        collector.run(posts, _praw_page(client))
    return collector.result()


def _public_page(
    client: RedditPublicClient, priority: Priority, deadline: float
) -> Callable[[Post, int], list[Post]]:
    def page(post: Post, limit: int) -> list[Post]:
        params = {"limit": limit, "sort": "top", "depth": 1, "raw_json": 1}
        resp = client._get(params, deadline, priority, f"/comments/{post.id}.json")
        try:
            payload = resp.json()
        except ValueError:
            raise SourceError("reddit", "unreachable", "comments answered with non-JSON") from None
        return [comment_from_reddit(d, post, client.base_url) for d in top_level_comments(payload)]

    return page


def _praw_page(client: RedditPrawClient) -> Callable[[Post, int], list[Post]]:
    def page(post: Post, limit: int) -> list[Post]:
        import prawcore
        from praw.models import MoreComments

        submission = client.reddit.submission(id=post.id)
        submission.comment_sort = "top"
        submission.comment_limit = limit
        try:
            forest = submission.comments  # one GET /comments/<id>/?limit=&sort=top
            top = [forest[i] for i in range(len(forest))]  # top level only, no MoreComments expanded
        except prawcore.exceptions.PrawcoreException as exc:
            raise _praw_error(exc) from None
        # vars(), not getattr: a missing attribute makes praw fetch the comment again.
        return [
            comment_from_reddit(dict(vars(c)), post, client.base_url)
            for c in top
            if not isinstance(c, MoreComments)
        ]

    return page


def with_comments(fetched: FetchResult, got: CommentsResult, asked: int) -> FetchResult:
    """The fetch with the comments after its posts; a comment phase cut short makes it partial."""
    excluded = dict(fetched.excluded)
    for reason, n in got.excluded.items():
        excluded[f"comment_{reason}"] = excluded.get(f"comment_{reason}", 0) + n
    partial = fetched.partial
    if got.partial:
        partial = f"{partial}; {got.partial}" if partial else got.partial
    stats = CommentStats(asked, got.posts_read, len(got.comments), got.requests, got.partial)
    return dataclasses.replace(
        fetched,
        posts=[*fetched.posts, *got.comments],
        excluded=excluded,
        partial=partial,
        requests=fetched.requests + got.requests,
        comments=stats,
    )


def corpus_comments(fetched: FetchResult, asked: int) -> FetchResult:
    """The local corpus has no comments: say so, never fail."""
    if asked <= 0:
        return fetched
    return dataclasses.replace(fetched, comments=CommentStats(asked, 0, 0, 0, CORPUS_HAS_NO_COMMENTS))
