from __future__ import annotations

import pytest

from serve_app.security import RateLimiter, key_matches

pytestmark = pytest.mark.unit


def test_key_matches() -> None:
    assert key_matches("s3cret", "s3cret")
    assert not key_matches("s3cret ", "s3cret")
    assert not key_matches(None, "s3cret")
    assert not key_matches("", "s3cret")


def test_rate_limiter_allows_a_burst_then_says_how_long_to_wait() -> None:
    now = [0.0]
    rl = RateLimiter(rate_per_min=60, burst=3, clock=lambda: now[0])
    assert [rl.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.check("a")
    assert wait == pytest.approx(1.0)
    assert rl.check("b") == 0.0  # clients are independent
    now[0] += 1.0
    assert rl.check("a") == 0.0  # refilled at one a second


def test_rate_limiter_memory_is_bounded() -> None:
    rl = RateLimiter(rate_per_min=60, burst=1, max_clients=100)
    for i in range(1000):
        rl.check(f"client-{i}")
    assert len(rl._buckets) == 100
