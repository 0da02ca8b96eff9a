"""One computation per concurrent question.

When a popular keyword's cache entry expires, every user asking in the next seconds would
fetch and classify the same posts. `SingleFlight.run` lets the first caller compute:

- in this process, the others await the same future;
- across ingress replicas, the first takes a short Redis lock (`SET NX PX`) and the others
  poll the cache for its answer, computing themselves only if the lock disappears without
  an answer (the computing replica died or failed) or after `wait_s`.

With Redis down (or no cache), each replica computes on its own: coalescing is an
optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from serve_app.cache import AnalysisCache

LOCK_PREFIX = "em:flight:"
Answer = dict[str, Any]

# Delete the lock only if it is still ours (it may have expired and been taken by another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SingleFlight:
    def __init__(self, cache: AnalysisCache, wait_s: float = 90.0, poll_s: float = 0.1) -> None:
        self.cache = cache
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._flights: dict[str, asyncio.Future[Answer]] = {}
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
            return dict(answer), False
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
        lock, token = LOCK_PREFIX + flight_key, uuid.uuid4().hex
        try:
            mine = await client.set(lock, token, nx=True, px=int(self.wait_s * 1000))
        except (redis.RedisError, OSError) as exc:
            self.cache.mark_failed(exc)
            return await compute(), True
        if mine:
            try:
                return await compute(), True
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.eval(_RELEASE, 1, lock, token)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.poll_s)
            answer = await self.cache.get(key)
            if answer is not None and (not with_plot or answer.get("plot_base64")):
                self.coalesced += 1
                return answer, False
            try:
                if not await client.exists(lock):
                    break  # the computing replica finished without an answer, or died
            except (redis.RedisError, OSError):
                break
        return await compute(), True
