"""One computation per concurrent question, within a replica and across replicas (real Redis)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from serve_app.domain.schemas import Analysis
from serve_app.stores.cache import AnalysisCache
from serve_app.stores.single_flight import SingleFlight
from tests.integration.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.integration


def answer(keyword: str, count: int = 0) -> Analysis:
    return Analysis(keyword=keyword, count=count, post_source="jsonl", model_version="v1")


def replicas(n: int, url: str | None = TEST_REDIS_URL) -> list[SingleFlight]:
    # Each stands for an ingress replica: its own process, so its own lock owner name.
    return [
        SingleFlight(AnalysisCache(url, 60), wait_s=10, poll_s=0.05, owner=f"replica{i}") for i in range(n)
    ]


def test_concurrent_askers_in_two_replicas_share_one_computation(redis_client: redis.Redis) -> None:
    calls = 0

    async def main() -> list[tuple[Analysis, bool]]:
        flights = replicas(2)

        async def compute_and_cache(flight: SingleFlight) -> Analysis:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.5)  # fetch + classify
            computed = answer("intel", calls)
            await flight.cache.set("em:test:flight:intel", computed)
            return computed

        asks = [
            flights[i % 2].run("em:test:flight:intel", lambda f=flights[i % 2]: compute_and_cache(f))
            for i in range(6)
        ]
        return await asyncio.gather(*asks)

    redis_client.delete("em:test:flight:intel")
    answers = asyncio.run(main())
    assert calls == 1
    assert [computed for _, computed in answers].count(True) == 1
    assert all(a.keyword == "intel" and a.count == 1 for a, _ in answers)


def test_a_failed_leader_lets_a_waiting_replica_compute(redis_client: redis.Redis) -> None:
    async def main() -> tuple[BaseException | tuple[Analysis, bool], ...]:
        a, b = replicas(2)

        async def fails() -> Analysis:
            await asyncio.sleep(0.3)
            raise RuntimeError("source down")

        async def works() -> Analysis:
            return answer("ok")

        first = asyncio.create_task(a.run("em:test:flight:fail", fails))
        await asyncio.sleep(0.05)  # a holds the lock
        return tuple(await asyncio.gather(first, b.run("em:test:flight:fail", works), return_exceptions=True))

    redis_client.delete("em:test:flight:fail")
    failed, ok = asyncio.run(main())
    assert isinstance(failed, RuntimeError)
    assert ok == (answer("ok"), True)


def test_without_redis_each_replica_computes_but_one_replica_still_coalesces() -> None:
    calls = 0

    async def main() -> None:
        (flight,) = replicas(1, "redis://127.0.0.1:9/0")  # nothing listens there

        async def compute() -> Analysis:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.2)
            return answer("x")

        await asyncio.gather(*(flight.run("k", compute) for _ in range(4)))

    asyncio.run(main())
    assert calls == 1


def test_a_lock_left_by_a_lost_release_does_not_hold_this_replica(redis_client: redis.Redis) -> None:
    """Redis went down while a computation ran, so its lock's release was lost (and an AOF
    restore brings the lock back): this process sees the lock is its own, with nothing
    computing it, and computes instead of waiting for the lock to expire."""

    async def main() -> tuple[Analysis, bool]:
        (flight,) = replicas(1)
        redis_client.set("em:flight:em:test:flight:stale", f"{flight._owner}:lost", px=15_000)

        async def compute() -> Analysis:
            return answer("fresh")

        return await asyncio.wait_for(flight.run("em:test:flight:stale", compute), timeout=3)

    redis_client.delete("em:test:flight:stale")
    assert asyncio.run(main()) == (answer("fresh"), True)
    redis_client.delete("em:flight:em:test:flight:stale")


def test_the_lock_outlives_its_ttl_while_the_computation_runs(redis_client: redis.Redis) -> None:
    from serve_app.stores import single_flight

    async def main() -> int:
        (flight,) = replicas(1)

        async def slow() -> Analysis:
            await asyncio.sleep(1.5)
            return answer("ok")

        old = single_flight.LOCK_TTL_S
        single_flight.LOCK_TTL_S = 0.6
        try:
            task = asyncio.create_task(flight.run("em:test:flight:long", slow))
            await asyncio.sleep(1.2)  # twice the TTL: kept alive by the leader
            ttl = int(redis_client.pttl("em:flight:em:test:flight:long"))
            await task
            return ttl
        finally:
            single_flight.LOCK_TTL_S = old

    assert asyncio.run(main()) > 0
    assert not redis_client.exists("em:flight:em:test:flight:long")  # released at the end


def test_a_cached_answer_keeps_its_stored_form(redis_client: redis.Redis) -> None:
    """Entries written before the cache held `Analysis` (compact JSON of the answer's dict)
    read back as the model, and the model is written back byte for byte the same."""
    old = answer("intel", 7).model_dump(mode="json")  # as the old flow wrote it
    stored = json.dumps(old, separators=(",", ":"))
    redis_client.set("em:test:cache:old", stored)

    async def main() -> Analysis | None:
        cache = AnalysisCache(TEST_REDIS_URL, 60)
        got = await cache.get("em:test:cache:old")
        assert got is not None
        await cache.set("em:test:cache:again", got)
        redis_client.set("em:test:cache:junk", b"{not json")
        assert await cache.get("em:test:cache:junk") is None  # unreadable: a miss, not an error
        return got

    got = asyncio.run(main())
    assert got is not None and got.count == 7 and got.model_dump(mode="json") == old
    assert redis_client.get("em:test:cache:again") == stored.encode()
    redis_client.delete("em:test:cache:old", "em:test:cache:again", "em:test:cache:junk")
