"""Redis cache-aside for /analyze results; the service keeps answering when Redis is down."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import redis
import redis.asyncio as aioredis

from serve_app.domain.schemas import Analysis
from serve_app.domain.tasks import TRIAGE_TASK
from serve_app.model.preprocess import normalize_keyword

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.cache")

KEY_PREFIX = "em:analyze:v1:"


def cache_key(keyword: str, limit: int, source: str, model_version: str, lang: str = "en") -> str:
    """Key from the normalised keyword (hashed: any bytes are safe), limit, source, model."""
    digest = hashlib.sha256(
        json.dumps(
            [normalize_keyword(keyword), int(limit), source, model_version, lang], ensure_ascii=False
        ).encode()
    ).hexdigest()
    return KEY_PREFIX + digest


def analysis_key(
    keyword: str,
    limit: int,
    source: str,
    versions: dict[str, str],
    *,
    lang: str = "en",
    negative_threshold: float | None = None,
    include_other_languages: bool = False,
    scope: str = "",
) -> str:
    """The cache key of one /analyze: every model version asked for, and every option that
    changes the answer (the threshold only matters when the triage task runs)."""
    model = ";".join(f"{t}={v}" for t, v in sorted(versions.items()))
    if TRIAGE_TASK in versions and negative_threshold is not None:
        model += f";neg>={negative_threshold:g}"
    if include_other_languages:
        model += ";all-languages"
    if scope:  # subreddits, time window, sort, comments (Question.scope_key)
        model += f";{scope}"
    return cache_key(keyword, limit, source, model, lang)


class AnalysisCache:
    """Async get/set of JSON values with a TTL.

    Every Redis failure degrades to a miss. After a failure Redis is not tried again for
    `retry_after_s`, so an outage costs requests nothing; the outage is logged once, and
    its end too. The client reconnects by itself when Redis returns.
    """

    def __init__(
        self, url: str | None, ttl_s: int, timeout_s: float = 0.25, retry_after_s: float = 2.0
    ) -> None:
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.client: aioredis.Redis | None = None
        if url:
            self.client = aioredis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        self._down_since: float | None = None
        self._skip_until = 0.0

    @property
    def available(self) -> bool:
        return self.client is not None and time.monotonic() >= self._skip_until

    def mark_failed(self, exc: Exception) -> None:
        """Stop trying Redis for `retry_after_s`; log the start of an outage once."""
        self._skip_until = time.monotonic() + self.retry_after_s
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "Redis unavailable (%s); answering without the cache until it returns", type(exc).__name__
            )

    def mark_ok(self) -> None:
        """Redis answered: log the end of an outage, if there was one."""
        if self._down_since is not None:
            log.warning("Redis is back after %.1f s; caching resumed", time.monotonic() - self._down_since)
            self._down_since = None

    async def get(self, key: str) -> Analysis | None:
        if not self.available or self.client is None:
            return None
        try:
            raw = await self.client.get(key)
        except (redis.RedisError, OSError) as exc:
            self.mark_failed(exc)
            return None
        self.mark_ok()
        if raw is None:
            return None
        try:
            return Analysis.model_validate_json(raw)
        except ValueError:  # not JSON, or not an answer this version can read: a miss
            return None

    async def set(self, key: str, value: Analysis, ttl_s: int | None = None) -> bool:
        if not self.available or self.client is None:
            return False
        # The stored form predates this model: compact json.dumps of its JSON dump, so entries
        # written by either version read the same.
        text = json.dumps(value.model_dump(mode="json"), separators=(",", ":"))
        try:
            await self.client.set(key, text, ex=ttl_s or self.ttl_s)
        except (redis.RedisError, OSError) as exc:
            self.mark_failed(exc)
            return False
        self.mark_ok()
        return True

    async def ping(self) -> str:
        if self.client is None:
            return "disabled"
        try:
            await self.client.ping()
        except (redis.RedisError, OSError) as exc:
            self.mark_failed(exc)
            return "down"
        self._skip_until = 0.0
        self.mark_ok()
        return "ok"
