"""Per-post scores kept in Redis, so a post is classified once per model version and task.

An analysis whose answer is not cached often covers posts scored minutes ago by another
analysis (a different limit, the warmer, a watchlist's monitor). Each post's row (label,
confidence, scores) is kept under (task, model version, source, post id) with a TTL;
`/analyze`, the warmer and the monitor look rows up before they call the Classifier and
store what it returns. A new model version never reads an older version's rows.

Without Redis every post is classified, as before: the cache is an optimisation only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import redis

from serve_app.domain.records import PredictionRow
from serve_app.stores.cache import AnalysisCache

PREFIX = "em:score:"
Row = PredictionRow


def score_key(task: str, version: str, source: str, post_id: str) -> str:
    return f"{PREFIX}{task}:{version}:{source}:{post_id}"


class ScoreCache:
    def __init__(self, cache: AnalysisCache, ttl_s: int) -> None:
        self.cache = cache  # shares the analysis cache's connection and its down-detection
        self.ttl_s = ttl_s

    @property
    def usable(self) -> bool:
        return self.ttl_s > 0 and self.cache.client is not None and self.cache.available

    async def get(
        self, source: str, post_ids: Sequence[str], versions: Mapping[str, str]
    ) -> dict[str, dict[str, Row]]:
        """Per task, the rows known for these posts under these versions (missing ones absent)."""
        found: dict[str, dict[str, Row]] = {task: {} for task in versions}
        if not self.usable or not post_ids:
            return found
        assert self.cache.client is not None
        keys = [score_key(t, v, source, pid) for t, v in versions.items() for pid in post_ids]
        try:
            values = await self.cache.client.mget(keys)
        except (redis.RedisError, OSError) as exc:
            self.cache.mark_failed(exc)
            return found
        it = iter(values)
        for task in versions:
            for pid in post_ids:
                raw = next(it)
                if raw is not None:
                    found[task][pid] = json.loads(raw)
        return found

    async def put(
        self, source: str, rows: Mapping[str, Mapping[str, Row]], versions: Mapping[str, str]
    ) -> None:
        """Store rows: task -> post id -> row, each under its task's model version."""
        if not self.usable or not any(rows.values()):
            return
        assert self.cache.client is not None
        pipe = self.cache.client.pipeline(transaction=False)
        for task, by_post in rows.items():
            for pid, row in by_post.items():
                pipe.set(score_key(task, versions[task], source, pid), json.dumps(row), ex=self.ttl_s)
        try:
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.cache.mark_failed(exc)
