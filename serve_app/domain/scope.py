"""Where and when to look, and in which order: an analysis's scope (issue 27).

A `Scope` is what `/analyze`, a watch or the CLI asked for beyond the keyword: only some
subreddits, some left out, a time window (Reddit's `t`) or explicit `since`/`until`, and
the sort. It is a frozen dataclass of plain values, so it crosses Ray process boundaries,
and it renders itself the way each source needs it:

- Reddit's search (`reddit_search`): one subreddit -> `/r/<sub>/search?restrict_sr=1`,
  several -> `/r/a+b/search?restrict_sr=1`, exclusions -> `-subreddit:x` terms in `q`,
  `t=` and `sort=`. Reddit has no since/until: `t` is chosen to cover `since`, and the
  exact bounds are applied client-side (`admits`).
- The local corpus (`corpus_order`, `admits`): its own fields (subreddit, created_utc,
  score, num_comments).

The default scope renders nothing extra into a cache key, so answers cached before scopes
existed keep their keys.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from serve_app.domain.posts import Post

TimeWindow = Literal["hour", "day", "week", "month", "year", "all"]
SortOrder = Literal["relevance", "new", "top", "comments"]
CountOver = Literal["posts", "comments", "both"]
TIME_WINDOWS: tuple[TimeWindow, ...] = ("hour", "day", "week", "month", "year", "all")
SORT_ORDERS: tuple[SortOrder, ...] = ("relevance", "new", "top", "comments")

# Seconds each Reddit window reaches back. A month is taken as 28 days and a year as 365, the
# shortest they can be, so a window picked to cover `since` always does.
WINDOW_S: dict[TimeWindow, float] = {
    "hour": 3600.0,
    "day": 86_400.0,
    "week": 7 * 86_400.0,
    "month": 28 * 86_400.0,
    "year": 365 * 86_400.0,
}

# How far back the local corpus looks for each window (Reddit's own `t`, roughly).
WINDOW_FILTER_S: dict[TimeWindow, float] = {**WINDOW_S, "month": 30 * 86_400.0}

# Reddit's rule for subreddit names: 3-21 letters, digits or underscores (case-insensitive).
_SUBREDDIT = re.compile(r"^[A-Za-z0-9_]{3,21}$")
MAX_SUBREDDITS = 25


class InvalidScope(ValueError):
    """A scope value Reddit would not accept; the message names the value."""


def normalize_subreddit(name: str) -> str:
    """`r/Python`, `/r/python/` and `Python` are the same subreddit: `python`."""
    raw = name.strip()
    bare = raw.strip("/")
    if bare[:2].lower() == "r/":
        bare = bare[2:]
    if not _SUBREDDIT.fullmatch(bare):
        raise InvalidScope(
            f"{name!r} is not a valid subreddit name: 3-21 letters, digits or underscores, "
            "optionally prefixed with r/"
        )
    return bare.lower()


def normalize_subreddits(names: Iterable[str]) -> tuple[str, ...]:
    """Validated, lower-cased, de-duplicated, sorted (the order never changes an answer)."""
    return tuple(sorted({normalize_subreddit(n) for n in names}))


def window_covering(since: float, now: float) -> TimeWindow:
    """The narrowest Reddit window `t` that still reaches back to `since`."""
    age = now - since
    for window, seconds in WINDOW_S.items():
        if age <= seconds:
            return window
    return "all"


@dataclass(frozen=True)
class Scope:
    subreddits: tuple[str, ...] = ()  # normalised (see normalize_subreddits)
    exclude_subreddits: tuple[str, ...] = ()
    time_window: TimeWindow | None = None
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive
    sort: SortOrder = "relevance"

    def __post_init__(self) -> None:
        # Normalised here too, so every way of building a scope gives the same key.
        object.__setattr__(self, "subreddits", normalize_subreddits(self.subreddits))
        object.__setattr__(self, "exclude_subreddits", normalize_subreddits(self.exclude_subreddits))
        if self.time_window is not None and (self.since is not None or self.until is not None):
            raise InvalidScope("give time_window or since/until, not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidScope("since must be before until")
        both = set(self.subreddits) & set(self.exclude_subreddits)
        if both:
            raise InvalidScope(f"subreddits both included and excluded: {sorted(both)}")

    @property
    def is_default(self) -> bool:
        return self == Scope()

    def key_part(self) -> str:
        """What the scope adds to a cache key: nothing for the default scope."""
        if self.is_default:
            return ""
        return (
            f"sr={'+'.join(self.subreddits)};-sr={'+'.join(self.exclude_subreddits)};"
            f"t={self.time_window or ''};since={self.since or ''};until={self.until or ''};"
            f"sort={self.sort}"
        )

    def window_start(self, now: float, windows: bool = True) -> float | None:
        """The earliest creation time the scope admits (None: no bound). `windows=False`:
        only `since` (Reddit applies its own `t`, by its own clock and month)."""
        if self.since is not None:
            return self.since
        if windows and self.time_window is not None and self.time_window != "all":
            return now - WINDOW_FILTER_S[self.time_window]
        return None

    def reddit_t(self, now: float) -> TimeWindow | None:
        """Reddit's `t`: the window asked for, or the narrowest one covering `since`."""
        if self.time_window is not None:
            return self.time_window
        if self.since is not None:
            return window_covering(self.since, now)
        return None

    def admits(self, post: Post, now: float, windows: bool = True) -> bool:
        """Whether a fetched post is inside the scope: for Reddit (`windows=False`) the bounds
        it cannot apply itself and a guard on the subreddits; for the corpus, everything."""
        sub = post.subreddit.lower()
        if self.subreddits and sub not in self.subreddits:
            return False
        if sub in self.exclude_subreddits:
            return False
        start = self.window_start(now, windows)
        if start is not None and post.created_utc < start:
            return False
        return self.until is None or post.created_utc < self.until

    def past_window(self, post: Post, now: float) -> bool:
        """With `sort=new` a post older than `since` means every later one is too."""
        start = self.window_start(now, windows=False)
        return self.sort == "new" and start is not None and post.created_utc < start


@dataclass(frozen=True)
class RedditSearch:
    """One search as Reddit's API takes it: the listing path (without `.json`) and params."""

    path: str
    q: str
    sort: SortOrder
    t: TimeWindow | None
    restrict_sr: bool

    @property
    def subreddit(self) -> str:
        """The praw subreddit to search (`all`, `python`, `python+rust`)."""
        return self.path.removeprefix("/r/").removesuffix("/search") if self.restrict_sr else "all"

    def params(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"q": self.q, "sort": self.sort}
        if self.t is not None:
            out["t"] = self.t
        if self.restrict_sr:
            out["restrict_sr"] = 1
        return out


def reddit_search(keyword: str, scope: Scope, now: float | None = None) -> RedditSearch:
    """The scope in Reddit's search syntax (see the module docstring)."""
    q = " ".join([keyword, *(f"-subreddit:{s}" for s in scope.exclude_subreddits)])
    t = scope.reddit_t(time.time() if now is None else now)
    if scope.subreddits:
        return RedditSearch(f"/r/{'+'.join(scope.subreddits)}/search", q, scope.sort, t, True)
    return RedditSearch("/search", q, scope.sort, t, False)


def corpus_order(sort: SortOrder) -> Callable[[Post], float] | None:
    """How the local corpus orders its matches for a sort (None: its own newest-first order,
    which is also `relevance`: a keyword either matches a post or does not)."""
    if sort == "top":
        return lambda p: -float(p.score)  # a stable sort keeps ties newest first
    if sort == "comments":
        return lambda p: -float(p.num_comments)
    return None


def counted_kinds(count_over: CountOver) -> frozenset[str]:
    """Which kinds of text the breakdowns count."""
    if count_over == "both":
        return frozenset({"post", "comment"})
    return frozenset({"post" if count_over == "posts" else "comment"})
