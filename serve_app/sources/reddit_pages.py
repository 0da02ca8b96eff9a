"""The stop rules and the hygiene of one paginated Reddit search, shared by both clients."""

from __future__ import annotations

import math
import time

from serve_app.domain.posts import FetchResult, Post, PostFilter
from serve_app.domain.scope import Scope
from serve_app.monitoring import metrics

PAGE = 100  # Reddit's maximum page size


def max_pages(limit: int) -> int:
    """The pages `limit` posts need, plus one for posts that hygiene leaves out."""
    return math.ceil(max(1, limit) / PAGE) + 1


class Pages:
    """The stop rules and the hygiene of one paginated search, shared by both clients."""

    def __init__(self, limit: int, include_nsfw: bool, scope: Scope | None = None) -> None:
        self.limit = limit
        self.filter = PostFilter(include_nsfw)
        self.posts: list[Post] = []
        self.pages = 0
        # Posts outside a scope Reddit cannot apply itself (since/until) count as taken when
        # deciding on another page: a scoped search never sends more requests than an
        # unscoped one with the same limit (a page already paid for is still read whole).
        self.scope = scope or Scope()
        self.now = time.time()
        self.out_of_scope = 0
        self.past_window = False
        self._seen: set[str] = set()
        self._cursors: set[str] = set()

    @property
    def full(self) -> bool:
        """No room for another post (or, with `sort=new`, every further one is before `since`)."""
        return len(self.posts) >= self.limit or self.past_window

    @property
    def done(self) -> bool:
        """No further page: full, or full counting the posts read outside the scope as taken."""
        return self.full or len(self.posts) + self.out_of_scope >= self.limit

    def add(self, post: Post) -> bool:
        """Take one post; whether it was new to this search (even if hygiene left it out)."""
        if not post.id or post.id in self._seen:
            return False
        self._seen.add(post.id)
        if self.full:
            return True
        if not self.scope.admits(post, self.now, windows=False):
            self.out_of_scope += 1
            self.past_window = self.scope.past_window(post, self.now)
        else:
            kept = self.filter.admit(post)
            if kept is not None:
                self.posts.append(kept)
        return True

    def next_cursor(self, after: str | None, new_posts: int) -> str | None:
        """The cursor to ask for next, or None: this page ends the search."""
        self.pages += 1
        if self.done or not after or new_posts == 0 or after in self._cursors:
            return None
        if self.pages >= max_pages(self.limit):
            return None
        self._cursors.add(after)
        return after

    def result(self, partial: str | None, requests: int) -> FetchResult:
        counts = self.filter.counts()
        metrics.record_excluded(counts)
        if self.out_of_scope:
            counts["out_of_scope"] = self.out_of_scope
        return FetchResult(self.posts[: self.limit], counts, partial, requests)
