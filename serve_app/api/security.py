"""API-key check and per-client rate limiting: pure pieces the ingress uses."""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the key."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def replica_share(rate_per_min: float, burst: int, replicas: int) -> tuple[float, int]:
    """One ingress replica's part of a per-client limit that `replicas` replicas enforce.

    Each replica keeps its own buckets in memory, and HAProxy (or Ray's proxy) spreads a
    client's requests over all of them; without the split the service would let a client
    through `replicas` times as often as configured. Exact for one replica, close for
    more while requests are spread evenly; a burst never drops below one request.
    """
    n = max(1, replicas)
    return rate_per_min / n, max(1, math.ceil(burst / n))


class RateLimiter:
    """Token bucket per client: `rate_per_min` requests a minute with bursts of `burst`.

    Buckets of clients not seen for a while are evicted (at most `max_clients` kept), so a
    flood of client addresses cannot grow memory without bound.
    """

    def __init__(
        self,
        rate_per_min: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str) -> float:
        """0.0 if the request may go ahead (a token is taken), else seconds to wait."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate if self.rate > 0 else math.inf
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait
