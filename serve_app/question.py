"""One analysis question, as the ingress, the cache and the warmer (and later monitors) see it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from serve_app.cache import analysis_key


@dataclass(frozen=True)
class Question:
    keyword: str
    limit: int
    source: str
    tasks: tuple[str, ...]
    negative_threshold: float
    lang: str = "en"
    include_other_languages: bool = False

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
        )
