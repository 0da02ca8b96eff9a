"""The shared Reddit request budget on a real Redis: one bucket for every process.

Each `RequestBudget` below stands for a process (a Fetcher replica, the warmer): it has its
own Redis connection and its own fallback bucket, as it would in its own process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from serve_app.domain.errors import SourceError
from serve_app.sources.reddit import RedditPublicClient
from serve_app.sources.request_budget import BudgetConfig, RequestBudget, take
from tests.integration.conftest import TEST_REDIS_URL
from tests.reddit_server import RedditTestServer, make_post

pytestmark = pytest.mark.integration


@pytest.fixture()
def key(redis_client: redis.Redis) -> Iterator[str]:
    name = f"em:test:budget:{time.monotonic_ns()}"
    yield name
    redis_client.delete(name)


def test_processes_share_one_bucket(key: str) -> None:
    cfg = BudgetConfig(per_min=60, burst=5, reserve=0, key=key)  # 1 token/s after a burst of 5
    replicas = [RequestBudget(cfg, TEST_REDIS_URL) for _ in range(3)]
    granted = [0, 0, 0]
    started = time.time()

    def worker(i: int) -> None:
        while time.time() - started < 2.0:
            if replicas[i].try_take("user") == 0:
                granted[i] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A bucket per process would grant 3 x (5 + 2); one shared bucket grants 5 + ~2 in all.
    assert 6 <= sum(granted) <= 8, granted


def test_background_work_leaves_the_reserve_to_users(key: str) -> None:
    cfg = BudgetConfig(per_min=1, burst=4, reserve=2, key=key)
    warmer, replica = RequestBudget(cfg, TEST_REDIS_URL), RequestBudget(cfg, TEST_REDIS_URL)
    assert warmer.try_take("background") == 0
    assert warmer.try_take("background") == 0
    assert warmer.try_take("background") > 0  # 2 left: the reserve
    assert replica.try_take("user") == 0 and replica.try_take("user") == 0
    assert replica.try_take("user") > 0


def test_reddit_saying_the_window_is_spent_stops_every_process(key: str) -> None:
    cfg = BudgetConfig(per_min=600, burst=10, reserve=0, key=key)
    a, b = RequestBudget(cfg, TEST_REDIS_URL), RequestBudget(cfg, TEST_REDIS_URL)
    a.observe(remaining=0, reset_s=30)
    wait = b.try_take("user")
    assert 29 <= wait <= 31
    with pytest.raises(SourceError) as err:
        b.acquire("user", deadline=time.time() + 2)  # a user's request: 503 within its deadline
    assert err.value.kind == "rate_limited" and err.value.retry_after is not None
    assert err.value.retry_after >= 29


def test_without_redis_each_process_keeps_its_own_bucket() -> None:
    cfg = BudgetConfig(per_min=60, burst=3, reserve=0, key="unused")
    budget = RequestBudget(cfg, "redis://127.0.0.1:9/0")  # nothing listens there
    assert [budget.try_take("user") == 0 for _ in range(4)] == [True, True, True, False]
    assert not budget.shared


def test_redis_and_local_buckets_agree(key: str) -> None:
    """The Lua script and `take` are the same arithmetic."""
    cfg = BudgetConfig(per_min=120, burst=3, reserve=1, key=key)
    now = [1000.0]
    shared = RequestBudget(cfg, TEST_REDIS_URL, clock=lambda: now[0])
    tokens, ts = 3.0, now[0]
    for step, prio in [(0, "user"), (0, "background"), (0, "background"), (0.2, "user"), (1.0, "user")]:
        now[0] += step
        tokens, ts, wait = take(
            tokens, ts, now[0], cfg.rate, cfg.burst, cfg.reserve if prio == "background" else 0
        )
        assert shared.try_take(prio) == pytest.approx(wait, abs=1e-6)  # type: ignore[arg-type]


def test_the_public_client_takes_a_token_per_request(key: str) -> None:
    cfg = BudgetConfig(per_min=6, burst=2, reserve=0, key=key)
    posts = [make_post(i, f"python {i}") for i in range(300)]
    with RedditTestServer(posts) as srv:
        client = RedditPublicClient(
            srv.url, timeout_s=2, deadline_s=3, budget=RequestBudget(cfg, TEST_REDIS_URL)
        )
        got = client.search("python", 250)  # 3 pages; 2 tokens, then one every 10 s
        assert len(srv.state.requests) == 2
        assert got.partial is not None and "budget" in got.partial
        with pytest.raises(SourceError) as err:  # nothing fetched: a 503 for the caller
            client.search("python", 10)
        assert err.value.kind == "rate_limited"
