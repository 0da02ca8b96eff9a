"""One analysis question, as the ingress, the cache and the warmer (and later monitors) see it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from serve_app.domain.scope import CountOver, Scope
from serve_app.stores.cache import analysis_key


@dataclass(frozen=True)
class Question:
    keyword: str
    limit: int
    source: str
    tasks: tuple[str, ...]
    negative_threshold: float
    lang: str = "en"
    include_other_languages: bool = False
    scope: Scope = field(default_factory=Scope)  # subreddits, time, sort (serve_app.domain.scope)
    include_comments: int = 0  # top comments of this many posts, as texts of their own
    count_over: CountOver = "both"  # which texts the breakdowns count

    def scope_key(self) -> str:
        """The scope and comment options in the cache key; "" for the defaults (old keys hold)."""
        comments = f"comments={self.include_comments};over={self.count_over}"
        if comments == "comments=0;over=both":
            comments = ""
        return ";".join(part for part in (self.scope.key_part(), comments) if part)

    def key(self, versions: Mapping[str, str]) -> str:
        """The cache key of this question's answer by these model versions (one per task)."""
        return analysis_key(
            self.keyword,
            self.limit,
            self.source,
            dict(versions),
            lang=self.lang,
            negative_threshold=self.negative_threshold,
            include_other_languages=self.include_other_languages,
            scope=self.scope_key(),
        )
