"""The scope and comment options of `analyze` and `watch add` (issue 27), declared once.

The service validates them (a 422 names the bad value); the CLI only passes on what was given.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

Subreddits = Annotated[
    list[str] | None,
    typer.Option("--subreddit", help="Search only this subreddit (repeatable; `r/` optional)."),
]
ExcludeSubreddits = Annotated[
    list[str] | None, typer.Option("--exclude-subreddit", help="Leave this subreddit out (repeatable).")
]
TimeWindow = Annotated[
    str | None,
    typer.Option("--time-window", help="Reddit's window: hour, day, week, month, year or all."),
]
Since = Annotated[str | None, typer.Option(help="Only posts created at or after this ISO time (UTC).")]
Until = Annotated[str | None, typer.Option(help="Only posts created before this ISO time (UTC).")]
Sort = Annotated[str | None, typer.Option(help="Search order: relevance, new, top or comments.")]
Comments = Annotated[
    int, typer.Option("--comments", help="Add the top comments of this many of the most relevant posts.")
]
CountOver = Annotated[
    str | None, typer.Option("--count-over", help="What the breakdowns count: posts, comments or both.")
]


def scope_body(
    subreddits: list[str] | None,
    exclude_subreddits: list[str] | None,
    time_window: str | None,
    since: str | None,
    until: str | None,
    sort: str | None,
) -> dict[str, Any]:
    """The scope fields given on the command line, as the request body takes them."""
    given: dict[str, Any] = {
        "subreddits": subreddits,
        "exclude_subreddits": exclude_subreddits,
        "time_window": time_window,
        "since": since,
        "until": until,
        "sort": sort,
    }
    return {k: v for k, v in given.items() if v}


def comments_body(comments: int, count_over: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"include_comments": comments} if comments else {}
    if count_over:
        body["count_over"] = count_over
    return body


def scope_line(data: dict[str, Any]) -> str | None:
    """One line saying what an answer's scope and comments were, when not the defaults."""
    s = data.get("scope") or {}
    parts = []
    if s.get("subreddits"):
        parts.append("r/" + "+".join(s["subreddits"]))
    if s.get("exclude_subreddits"):
        parts.append("not " + ", ".join("r/" + x for x in s["exclude_subreddits"]))
    if s.get("time_window"):
        parts.append(f"past {s['time_window']}")
    if s.get("since") or s.get("until"):
        parts.append(f"{s.get('since') or '...'} to {s.get('until') or 'now'}")
    if s.get("sort") and s["sort"] != "relevance":
        parts.append(f"sort {s['sort']}")
    c = data.get("comments")
    if c:
        parts.append(f"{c['comments']} comments from {c['posts_read']}/{c['posts_asked']} posts")
        if c.get("note"):
            parts.append(c["note"])
    if s.get("count_over") and s["count_over"] != "both":
        parts.append(f"counting {s['count_over']}")
    return "scope: " + "; ".join(parts) if parts else None
