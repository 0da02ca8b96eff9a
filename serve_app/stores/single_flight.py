"""One computation per concurrent question.

When a popular keyword's cache entry expires, every user asking in the next seconds would
fetch and classify the same posts. `SingleFlight.run` lets the first caller compute:

- in this process, the others await the same future;
- across ingress replicas, the first takes a short Redis lock (`SET NX PX`), which it keeps
  alive while it computes, and the others poll the cache for its answer, computing
  themselves if the lock disappears without an answer (the computing replica died or
  failed), if the lock is this process's own but nothing here computes it (its release was
  lost in a Redis outage), or after `wait_s`.

With Redis down (or no cache), each replica computes on its own: coalescing is an
optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import redis

from serve_app.domain.schemas import Analysis
from serve_app.stores.cache import AnalysisCache

LOCK_PREFIX = "em:flight:"
LOCK_TTL_S = 15.0  # a lock nobody keeps alive (its owner died) expires this soon
Answer = Analysis  # the cached answer

# Delete the lock only if it is still ours (it may have expired and been taken by another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Extend the lock only if it is still ours.
_KEEP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class SingleFlight:
    def __init__(
        self, cache: AnalysisCache, wait_s: float = 90.0, poll_s: float = 0.1, owner: str | None = None
    ) -> None:
        self.cache = cache
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._flights: dict[str, asyncio.Future[Answer]] = {}
        # Lock values name their process (one SingleFlight per ingress replica).
        self._owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self.coalesced = 0  # callers answered by another caller's computation

    async def run(
        self, key: str, compute: Callable[[], Awaitable[Answer]], with_plot: bool = False
    ) -> tuple[Answer, bool]:
        """(answer, whether this call computed it) for the question cached under `key`.

        `with_plot`: only an answer with a chart will do (callers wanting one and callers not
        wanting one are separate flights; a cached answer without a chart is not taken).
        """
        flight_key = f"{key}:plot" if with_plot else key
        flight = self._flights.get(flight_key)
        if flight is not None:
            answer = await asyncio.shield(flight)
            self.coalesced += 1
            return answer.model_copy(), False
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = fut
        try:
            answer, computed = await self._across_replicas(key, flight_key, compute, with_plot)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "exception was never retrieved" when nobody waited
            raise
        else:
            fut.set_result(answer)
            return answer, computed
        finally:
            del self._flights[flight_key]

    async def _across_replicas(
        self, key: str, flight_key: str, compute: Callable[[], Awaitable[Answer]], with_plot: bool
    ) -> tuple[Answer, bool]:
        client = self.cache.client
        if client is None or not self.cache.available:
            return await compute(), True
        lock, token = LOCK_PREFIX + flight_key, f"{self._owner}:{uuid.uuid4().hex}"
        ttl_ms = int(LOCK_TTL_S * 1000)
        try:
            mine = await client.set(lock, token, nx=True, px=ttl_ms)
        except (redis.RedisError, OSError) as exc:
            self.cache.mark_failed(exc)
            return await compute(), True
        if mine:
            keeper = asyncio.get_running_loop().create_task(self._keep(lock, token, ttl_ms))
            try:
                return await compute(), True
            finally:
                keeper.cancel()
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.eval(_RELEASE, 1, lock, token)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll_s)
            answer = await self.cache.get(key)
            if answer is not None and (not with_plot or answer.plot_base64):
                self.coalesced += 1
                return answer, False
            try:
                holder = await client.get(lock)
            except (redis.RedisError, OSError):
                break
            if holder is None:
                break  # the computing replica finished without an answer, or died
            if (holder.decode() if isinstance(holder, bytes) else str(holder)).startswith(f"{self._owner}:"):
                break  # ours, yet this process computes nothing for it: a release was lost
        return await compute(), True

    async def _keep(self, lock: str, token: str, ttl_ms: int) -> None:
        """Keep the lock alive while its computation runs (a slow fetch may outlast the TTL)."""
        assert self.cache.client is not None
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            with contextlib.suppress(redis.RedisError, OSError):
                await self.cache.client.eval(_KEEP, 1, lock, token, ttl_ms)
