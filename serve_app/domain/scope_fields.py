"""The request fields of a scope and of comments (issue 27), shared by `/analyze`, `/compare`
and watches, and the `scope` echoed in every answer.

Bad values are 422s that name the field and the value: each check is a field validator, so
FastAPI reports it under that field's `loc` (a model-level check would report only `body`).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from serve_app.domain.scope import (
    MAX_SUBREDDITS,
    CountOver,
    InvalidScope,
    Scope,
    SortOrder,
    TimeWindow,
    normalize_subreddits,
)

MAX_COMMENT_POSTS = 100


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime without a zone is taken as UTC (Reddit's `created_utc` is)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _epoch(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class ScopeFields(BaseModel):
    """Where and when to look, and the order of the search (see serve_app.domain.scope)."""

    subreddits: list[str] = Field(
        default_factory=list,
        max_length=MAX_SUBREDDITS,
        description="Search only these subreddits (3-21 letters, digits or _; `r/` optional; any case).",
    )
    exclude_subreddits: list[str] = Field(
        default_factory=list, max_length=MAX_SUBREDDITS, description="Leave posts from these subreddits out."
    )
    time_window: TimeWindow | None = Field(
        None, description="Reddit's window `t`: hour, day, week, month, year or all (not with since/until)."
    )
    since: dt.datetime | None = Field(
        None, description="Only posts created at or after this time (ISO 8601; UTC without a zone)."
    )
    until: dt.datetime | None = Field(
        None, description="Only posts created before this time (after `since`)."
    )
    sort: SortOrder = Field("relevance", description="Search order: relevance, new, top or comments.")

    @field_validator("subreddits", "exclude_subreddits")
    @classmethod
    def valid_subreddits(cls, v: list[str], info: ValidationInfo) -> list[str]:
        try:
            names = list(normalize_subreddits(v))
        except InvalidScope as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None
        if info.field_name == "exclude_subreddits":
            both = sorted(set(names) & set(info.data.get("subreddits") or []))
            if both:
                raise ValueError(f"exclude_subreddits: {both} also in subreddits")
        return names

    @field_validator("since", "until")
    @classmethod
    def valid_bounds(cls, v: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        try:
            v = _utc(v)
        except OverflowError:  # 0001-01-01 at +05:00, say: no UTC time exists for it
            raise ValueError(f"{info.field_name}: out of range once converted to UTC") from None
        if v is not None and info.data.get("time_window") is not None:
            raise ValueError(f"{info.field_name}: give time_window or since/until, not both")
        since = info.data.get("since")
        if info.field_name == "until" and v is not None and since is not None and since >= v:
            raise ValueError(f"until ({v.isoformat()}) must be after since ({since.isoformat()})")
        return v

    def scope(self) -> Scope:
        return Scope(
            tuple(self.subreddits),
            tuple(self.exclude_subreddits),
            self.time_window,
            _epoch(self.since),
            _epoch(self.until),
            self.sort,
        )


class AnalyzeOptions(ScopeFields):
    """The scope, and the comments to add as texts of their own."""

    include_comments: int = Field(
        0,
        ge=0,
        le=MAX_COMMENT_POSTS,
        description="Add the top comments of this many of the most relevant posts (0: posts only). Each "
        "post's comment page is one request from the Reddit budget; a budget or deadline running short "
        "makes the answer partial.",
    )
    count_over: CountOver = Field(
        "both", description="Which texts the breakdowns count: posts, comments or both."
    )

    @field_validator("count_over")
    @classmethod
    def comments_to_count(cls, v: CountOver, info: ValidationInfo) -> CountOver:
        if v == "comments" and not info.data.get("include_comments"):
            raise ValueError("count_over 'comments' needs include_comments of at least 1")
        return v


class ScopeEcho(BaseModel):
    """The scope as applied (names normalised; times in UTC)."""

    subreddits: list[str] = Field(default_factory=list)
    exclude_subreddits: list[str] = Field(default_factory=list)
    time_window: TimeWindow | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    sort: SortOrder = "relevance"
    include_comments: int = 0
    count_over: CountOver = "both"
    reddit_t: TimeWindow | None = Field(
        None, description="The window `t` sent to Reddit (chosen to cover `since`); exact bounds client-side."
    )


def scope_echo(scope: Scope, include_comments: int, count_over: CountOver, now: float) -> ScopeEcho:
    def when(ts: float | None) -> dt.datetime | None:
        return dt.datetime.fromtimestamp(ts, dt.UTC) if ts is not None else None

    return ScopeEcho(
        subreddits=list(scope.subreddits),
        exclude_subreddits=list(scope.exclude_subreddits),
        time_window=scope.time_window,
        since=when(scope.since),
        until=when(scope.until),
        sort=scope.sort,
        include_comments=include_comments,
        count_over=count_over,
        reddit_t=scope.reddit_t(now),
    )


class CommentsOut(BaseModel):
    """What adding comments did."""

    posts_asked: int = Field(description="Posts whose comments were asked for (include_comments).")
    posts_read: int = Field(description="Posts whose comment page was fetched.")
    comments: int = Field(description="Comments added as texts of their own (`kind: comment`).")
    requests: int = Field(description="Comment pages requested from Reddit.")
    note: str | None = Field(None, description="Why fewer posts were read than asked, or none could be.")
