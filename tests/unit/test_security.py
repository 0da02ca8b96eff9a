from __future__ import annotations

import pytest

from serve_app.api.security import RateLimiter, key_matches, replica_share
from serve_app.config.settings import Settings

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


def test_replicas_split_a_client_limit_so_together_they_enforce_it() -> None:
    assert replica_share(60, 20, 1) == (60, 20)
    assert replica_share(60, 20, 2) == (30, 10)
    assert replica_share(60, 3, 2) == (30, 2)  # rounded up: never below one request
    assert replica_share(60, 1, 4) == (15, 1)
    # Two replicas, a client's requests alternating between them (round robin): 20 in a
    # burst pass in all, as with one replica, not 40.
    now = [0.0]
    rate, burst = replica_share(60, 20, 2)
    limiters = [RateLimiter(rate, burst, clock=lambda: now[0]) for _ in range(2)]
    passed = sum(limiters[i % 2].check("c") == 0.0 for i in range(40))
    assert passed == 20


def test_rate_limiter_memory_is_bounded() -> None:
    rl = RateLimiter(rate_per_min=60, burst=1, max_clients=100)
    for i in range(1000):
        rl.check(f"client-{i}")
    assert len(rl._buckets) == 100


def test_settings_repr_and_errors_never_show_secrets() -> None:
    secrets = {
        "reddit": {"client_secret": "reddit-secret-91b2"},
        "stores": {
            "embedded": False,
            "postgres_url": "postgresql://u:pg-pass-4471@db:5432/x",
            "redis_url": "redis://:redis-pass-7c2d@cache:6379/0",
        },
        "s3": {"secret_access_key": "aws-secret-0f3e"},
        "http": {"api_key": "api-key-5d1a"},
    }
    s = Settings.model_validate(secrets)
    shown = repr(s) + str(s) + str(s.model_dump()) + s.model_dump_json()
    for word in ("reddit-secret-91b2", "pg-pass-4471", "redis-pass-7c2d", "aws-secret-0f3e", "api-key-5d1a"):
        assert word not in shown, word
    with pytest.raises(ValueError) as err:
        Settings.model_validate({"http": {"api_key": "api-key-5d1a"}, "reddit": {"retries": -1}})
    assert "api-key-5d1a" not in str(err.value)
