"""A local JSONL corpus of posts with an inverted index: keyword search in milliseconds.

Used for offline analysis, replays and load tests (`reddit_sample/posts.jsonl`). The same
post hygiene as for Reddit applies, so both sources count posts the same way.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from serve_app.domain.errors import SourceConfigError
from serve_app.domain.posts import FetchResult, Post, PostFilter
from serve_app.domain.scope import Scope, corpus_order

_WORD = re.compile(r"\w+", re.UNICODE)


def keyword_tokens(keyword: str) -> list[str]:
    return _WORD.findall(keyword.lower())


class JsonlCorpus:
    """A local corpus of posts with an inverted index: keyword search in milliseconds.

    A keyword matches a post when all its words occur in the title or body as whole
    words, adjacent and in order ("machine learning" does not match "learning machine";
    "ai" does not match "said"). Results are newest first.
    """

    def __init__(self, posts: list[Post]) -> None:
        # Newest first once, so every posting list is already in result order.
        self.posts = sorted(posts, key=lambda p: (-p.created_utc, p.id))
        self._tokens: list[list[str]] = []
        self.index: dict[str, list[int]] = {}
        for i, p in enumerate(self.posts):
            toks = _WORD.findall(f"{p.title}\n{p.body}".lower())
            self._tokens.append(toks)
            for t in set(toks):
                self.index.setdefault(t, []).append(i)

    @classmethod
    def from_file(cls, path: str | Path) -> JsonlCorpus:
        path = Path(path)
        if not path.is_file():
            raise SourceConfigError(
                f"JSONL corpus {path} not found; set EMOTION_MONITOR_SOURCES__JSONL_PATH to a posts file"
            )
        posts = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    posts.append(
                        Post(
                            id=str(r["id"]),
                            title=str(r.get("title", "")),
                            body=str(r.get("body", "")),
                            subreddit=str(r.get("subreddit", "")),
                            created_utc=float(r.get("created_utc", 0)),
                            score=int(r.get("score", 0)),
                            url=str(r.get("url", "")),
                            nsfw=bool(r.get("over_18", False)),
                            stickied=bool(r.get("stickied", False)),
                            num_comments=int(r.get("num_comments") or 0),
                        )
                    )
        return cls(posts)

    def __len__(self) -> int:
        return len(self.posts)

    def search(
        self,
        keyword: str,
        limit: int,
        include_nsfw: bool = False,
        scope: Scope | None = None,
        now: float | None = None,
    ) -> FetchResult:
        """The first `limit` posts (newest first, or in the scope's sort) that match, lie in the
        scope (its subreddits, its time window measured back from `now`) and pass hygiene
        (`serve_app.domain.posts.PostFilter`). No match is a valid empty result."""
        words = keyword_tokens(keyword)
        if not words or limit <= 0:
            return FetchResult([])
        postings = sorted((self.index.get(w, []) for w in set(words)), key=len)
        if not postings[0]:
            return FetchResult([])
        candidates: list[int]
        if len(postings) == 1:
            candidates = postings[0]
        else:
            common = set(postings[0]).intersection(*postings[1:])
            candidates = sorted(common)
        scope = scope or Scope()
        when = time.time() if now is None else now
        matches = (
            self.posts[i]
            for i in candidates
            if (len(words) == 1 or _has_phrase(self._tokens[i], words))
            and (scope.is_default or scope.admits(self.posts[i], when))
        )
        order = corpus_order(scope.sort)
        ordered = sorted(matches, key=order) if order is not None else matches
        out: list[Post] = []
        hygiene = PostFilter(include_nsfw)
        for post in ordered:
            kept = hygiene.admit(post)
            if kept is not None:
                out.append(kept)
                if len(out) >= limit:
                    break
        return FetchResult(out, hygiene.counts())


def _has_phrase(tokens: list[str], words: list[str]) -> bool:
    n = len(words)
    first = words[0]
    return any(tokens[i] == first and tokens[i : i + n] == words for i in range(len(tokens) - n + 1))
