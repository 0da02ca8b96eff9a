"""One request budget for Reddit, shared by every process that calls it.

Reddit allows each OAuth client on the order of 100 requests a minute (far fewer without
OAuth) and blocks applications that keep exceeding it. Every Fetcher replica, the cache
warmer and any later scheduler call Reddit, so the budget cannot live in one process: it is
a token bucket in Redis, taken from atomically by a Lua script. While Redis is unreachable
each process falls back to a bucket of its own (the same arithmetic, `take`), which can
overshoot by the number of processes for as long as the outage lasts.

Reddit's `x-ratelimit-remaining` / `x-ratelimit-reset` headers feed the bucket
(`observe`): when Reddit says the window is spent, nobody asks again before it resets.

Background work (priority "background") may only take a token while more than `reserve`
remain, so a warmer pass never leaves a user's request waiting.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis

from serve_app.domain.errors import SourceError
from serve_app.monitoring import metrics

log = logging.getLogger("ray.serve.emotion_monitor.budget")

Priority = Literal["user", "background"]


@dataclass(frozen=True)
class BudgetConfig:
    per_min: float  # sustained requests per minute
    burst: int  # bucket capacity: requests that may go out back to back
    reserve: float  # tokens background work must leave for users
    key: str  # the Redis key, one per Reddit credential (OAuth client or public access)

    @property
    def rate(self) -> float:
        return self.per_min / 60.0


def take(
    tokens: float, ts: float, now: float, rate: float, cap: float, floor: float
) -> tuple[float, float, float]:
    """One attempt to take a token: (tokens, ts, wait). `wait` 0 means taken.

    `ts` is when `tokens` was counted; a `ts` in the future means the bucket is empty until
    then (Reddit said the window is spent), with no refill before it.
    """
    if now > ts:
        tokens = min(cap, tokens + (now - ts) * rate)
        ts = now
    if ts > now:  # blocked until ts
        return tokens, ts, (ts - now) + max(0.0, floor + 1 - tokens) / rate
    if tokens - 1 < floor:
        return tokens, ts, (floor + 1 - tokens) / rate
    return tokens - 1, ts, 0.0


def observe(tokens: float, ts: float, now: float, remaining: float, reset_s: float) -> tuple[float, float]:
    """The bucket after Reddit reported `remaining` requests for the next `reset_s` seconds."""
    if remaining < 1:
        return 0.0, max(ts, now + reset_s)
    return min(tokens, remaining), ts


# The same two functions for Redis, run atomically. Numbers go back as strings: Redis turns a
# Lua number into an integer reply.
_TAKE = """
local now, rate, cap, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
local wait = 0
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate); ts = now end
if ts > now then wait = (ts - now) + math.max(0, floor + 1 - tokens) / rate
elseif tokens - 1 < floor then wait = (floor + 1 - tokens) / rate
else tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return tostring(wait)
"""

_OBSERVE = """
local now, remaining, reset = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or tonumber(ARGV[4])
local ts = tonumber(b[2]) or now
if remaining < 1 then tokens = 0; ts = math.max(ts, now + reset)
else tokens = math.min(tokens, remaining) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return tostring(tokens)
"""


class RequestBudget:
    """`acquire` before each request to Reddit, `observe` each response's headers."""

    REDIS_RETRY_S = 5.0  # after a Redis failure, use the local bucket this long before retrying

    def __init__(
        self,
        cfg: BudgetConfig,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(cfg.burst)
        self._ts = clock()
        self._redis_down_until = 0.0
        self._client: redis.Redis | None = None
        if redis_url:
            self._client = redis.Redis.from_url(
                redis_url, socket_connect_timeout=0.5, socket_timeout=0.5, decode_responses=True
            )
            self._take = self._client.register_script(_TAKE)
            self._observe = self._client.register_script(_OBSERVE)

    @property
    def shared(self) -> bool:
        """Whether the budget is the cluster-wide one in Redis right now."""
        return self._client is not None and self.clock() >= self._redis_down_until

    def _ttl(self) -> int:
        # Long enough to remember a spent window, short enough to forget an idle bucket.
        return int(max(120, 2 * self.cfg.burst / max(self.cfg.rate, 1e-9)))

    def _redis_failed(self, exc: Exception) -> None:
        if self.clock() >= self._redis_down_until:
            log.warning("request budget: Redis unavailable (%r); using this process's bucket", exc)
        self._redis_down_until = self.clock() + self.REDIS_RETRY_S

    def try_take(self, priority: Priority) -> float:
        """Take a token now if one is free for `priority`: 0.0, else the seconds to wait."""
        floor = self.cfg.reserve if priority == "background" else 0.0
        if self.shared:
            assert self._client is not None
            try:
                args = [self.clock(), self.cfg.rate, self.cfg.burst, floor, self._ttl()]
                return float(self._take(keys=[self.cfg.key], args=args))
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)
        with self._lock:
            self._tokens, self._ts, wait = take(
                self._tokens, self._ts, self.clock(), self.cfg.rate, self.cfg.burst, floor
            )
        return wait

    def acquire(self, priority: Priority, deadline: float) -> float:
        """Wait for a token, until `deadline` (a `clock()` time); the seconds waited.

        Raises `SourceError(rate_limited)` with a Retry-After when the next token comes
        after the deadline: the caller answers 503 rather than overrunning its own deadline.
        """
        started = self.clock()
        while True:
            wait = self.try_take(priority)
            if wait <= 0:
                waited = self.clock() - started
                metrics.record_budget_wait(priority, waited)
                return waited
            if self.clock() + wait > deadline:
                metrics.record_budget_refused(priority)
                raise SourceError(
                    "reddit",
                    "rate_limited",
                    f"request budget spent ({self.cfg.per_min:g}/min); next request in {wait:.1f} s",
                    retry_after=math.ceil(wait),
                )
            # Re-check after a short while at most: another process may return a spent window.
            self.sleep(min(wait, 1.0))

    def observe(self, remaining: float, reset_s: float) -> None:
        """Feed Reddit's `x-ratelimit-remaining` / `x-ratelimit-reset` into the bucket."""
        if self.shared:
            assert self._client is not None
            try:
                args = [self.clock(), remaining, reset_s, self.cfg.burst, self._ttl()]
                self._observe(keys=[self.cfg.key], args=args)
                return
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)
        with self._lock:
            self._tokens, self._ts = observe(self._tokens, self._ts, self.clock(), remaining, reset_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
