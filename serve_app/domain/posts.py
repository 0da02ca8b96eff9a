"""Posts as they cross the service: the `Post` record, a fetch's result, and post hygiene.

Hygiene decides which fetched posts are worth classifying. Someone's removed text is not
their opinion, a stickied moderator notice or an ad is not the public's, and a crosspost or
a copy-paste spammed to ten subreddits must count once, or it weighs ten times in the
breakdown. `PostFilter` applies the rules one post at a time, so a paginating source knows
how many usable posts it has before asking for another page.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Why a fetched post was left out, in the order the rules are tried.
ExclusionReason = Literal["empty", "nsfw", "stickied", "promoted", "crosspost", "duplicate"]
EXCLUSION_REASONS: tuple[ExclusionReason, ...] = (
    "empty",
    "nsfw",
    "stickied",
    "promoted",
    "crosspost",
    "duplicate",
)

# Bodies Reddit leaves in place of text a moderator, Reddit or the author removed.
REMOVED_BODIES = frozenset({"[removed]", "[deleted]", "[removed by reddit]", "[ removed by reddit ]"})


@dataclass(frozen=True)
class Post:
    id: str
    title: str
    body: str
    subreddit: str
    created_utc: float
    score: int
    url: str
    # What the source says about the post (Reddit's flags; a local corpus has none).
    nsfw: bool = False
    stickied: bool = False
    promoted: bool = False
    crosspost_of: str | None = None  # the original post's id, for a crosspost
    # Filled in by the Fetcher's language detection.
    lang: str = "und"
    lang_confidence: float = 0.0
    # A comment is a text of its own (issue 27): its title is "", its parent the post's id.
    kind: Literal["post", "comment"] = "post"
    parent_id: str | None = None
    num_comments: int = 0  # what the source says (the corpus may not know: 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CommentStats:
    """What adding comments to a fetch did (issue 27)."""

    posts_asked: int  # K: the most relevant posts whose comments were asked for
    posts_read: int  # posts whose comment page was fetched
    comments: int  # comments added as texts of their own
    requests: int  # comment pages requested from Reddit (each from the shared budget)
    note: str | None = None  # why fewer were read than asked, or why none could be


@dataclass(frozen=True)
class FetchResult:
    """What a source returned for one question.

    `partial` names why the list stopped short of what the source could have given
    (a later page failed, the deadline came near); `None` when the source was exhausted
    or the limit was reached. `excluded` counts the posts hygiene left out, by reason.
    """

    posts: list[Post]
    excluded: dict[str, int] = field(default_factory=dict)
    partial: str | None = None
    requests: int = 0  # HTTP requests the source sent for it (0 for a local corpus)
    comments: CommentStats | None = None  # when comments were asked for


def clean_body(body: str) -> str:
    """The body's text, or "" when it is only a removal marker."""
    return "" if body.strip().lower() in REMOVED_BODIES else body


class PostFilter:
    """Hygiene for one fetch: feed posts in order with `admit`, read `excluded` after.

    Rules: a removed or deleted body is dropped (the title stays); a post with neither
    title nor body is excluded; NSFW posts unless `include_nsfw`; stickied and promoted
    posts; a crosspost whose original (or a sibling crosspost) was already admitted; a
    post whose title and body repeat an admitted post's exactly (after case and
    whitespace folding).
    """

    def __init__(self, include_nsfw: bool = False) -> None:
        self.include_nsfw = include_nsfw
        self.excluded: Counter[str] = Counter()
        self._admitted: set[str] = set()
        self._originals: set[str] = set()  # posts admitted, or crossposted by an admitted post
        self._texts: set[bytes] = set()

    def admit(self, post: Post) -> Post | None:
        """The post as it should be classified (body cleaned), or None if it is left out."""
        if post.id in self._admitted:
            return None  # the same post again (overlapping pages): not an exclusion
        body = clean_body(post.body)
        if body != post.body:
            post = _replace_body(post, body)
        reason = self._reason(post)
        if reason is not None:
            self.excluded[reason] += 1
            return None
        self._admitted.add(post.id)
        self._originals.add(post.crosspost_of or post.id)
        self._texts.add(_text_key(post))
        return post

    def _reason(self, post: Post) -> ExclusionReason | None:
        if not post.title.strip() and not post.body.strip():
            return "empty"
        if post.nsfw and not self.include_nsfw:
            return "nsfw"
        if post.stickied:
            return "stickied"
        if post.promoted:
            return "promoted"
        # A crosspost of something admitted, or the original arriving after its crosspost.
        if (post.crosspost_of or post.id) in self._originals:
            return "crosspost"
        if _text_key(post) in self._texts:
            return "duplicate"
        return None

    def counts(self) -> dict[str, int]:
        return {r: self.excluded[r] for r in EXCLUSION_REASONS if self.excluded[r]}


def _replace_body(post: Post, body: str) -> Post:
    d = post.as_dict()
    d["body"] = body
    return Post(**d)


def _text_key(post: Post) -> bytes:
    text = " ".join(f"{post.title}\n{post.body}".lower().split())
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
