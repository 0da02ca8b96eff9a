"""One computation per concurrent question, within a replica and across replicas (real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from serve_app.cache import AnalysisCache
from serve_app.single_flight import SingleFlight
from tests.integration.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.integration


def replicas(n: int, url: str | None = TEST_REDIS_URL) -> list[SingleFlight]:
    # Each stands for an ingress replica: its own process, so its own lock owner name.
    return [
        SingleFlight(AnalysisCache(url, 60), wait_s=10, poll_s=0.05, owner=f"replica{i}") for i in range(n)
    ]


def test_concurrent_askers_in_two_replicas_share_one_computation(redis_client: redis.Redis) -> None:
    calls = 0

    async def main() -> list[tuple[dict[str, Any], bool]]:
        flights = replicas(2)

        async def compute_and_cache(flight: SingleFlight) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.5)  # fetch + classify
            answer = {"keyword": "intel", "n": calls}
            await flight.cache.set("em:test:flight:intel", answer)
            return answer

        asks = [
            flights[i % 2].run("em:test:flight:intel", lambda f=flights[i % 2]: compute_and_cache(f))
            for i in range(6)
        ]
        return await asyncio.gather(*asks)

    redis_client.delete("em:test:flight:intel")
    answers = asyncio.run(main())
    assert calls == 1
    assert [computed for _, computed in answers].count(True) == 1
    assert all(a == {"keyword": "intel", "n": 1} for a, _ in answers)


def test_a_failed_leader_lets_a_waiting_replica_compute(redis_client: redis.Redis) -> None:
    async def main() -> tuple[BaseException | tuple[dict[str, Any], bool], ...]:
        a, b = replicas(2)

        async def fails() -> dict[str, Any]:
            await asyncio.sleep(0.3)
            raise RuntimeError("source down")

        async def works() -> dict[str, Any]:
            return {"ok": True}

        first = asyncio.create_task(a.run("em:test:flight:fail", fails))
        await asyncio.sleep(0.05)  # a holds the lock
        return tuple(await asyncio.gather(first, b.run("em:test:flight:fail", works), return_exceptions=True))

    redis_client.delete("em:test:flight:fail")
    failed, ok = asyncio.run(main())
    assert isinstance(failed, RuntimeError)
    assert ok == ({"ok": True}, True)


def test_without_redis_each_replica_computes_but_one_replica_still_coalesces() -> None:
    calls = 0

    async def main() -> None:
        (flight,) = replicas(1, "redis://127.0.0.1:9/0")  # nothing listens there

        async def compute() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.2)
            return {"x": 1}

        await asyncio.gather(*(flight.run("k", compute) for _ in range(4)))

    asyncio.run(main())
    assert calls == 1


def test_a_lock_left_by_a_lost_release_does_not_hold_this_replica(redis_client: redis.Redis) -> None:
    """Redis went down while a computation ran, so its lock's release was lost (and an AOF
    restore brings the lock back): this process sees the lock is its own, with nothing
    computing it, and computes instead of waiting for the lock to expire."""

    async def main() -> tuple[dict[str, Any], bool]:
        (flight,) = replicas(1)
        redis_client.set("em:flight:em:test:flight:stale", f"{flight._owner}:lost", px=15_000)

        async def compute() -> dict[str, Any]:
            return {"fresh": True}

        return await asyncio.wait_for(flight.run("em:test:flight:stale", compute), timeout=3)

    redis_client.delete("em:test:flight:stale")
    assert asyncio.run(main()) == ({"fresh": True}, True)
    redis_client.delete("em:flight:em:test:flight:stale")


def test_the_lock_outlives_its_ttl_while_the_computation_runs(redis_client: redis.Redis) -> None:
    from serve_app import single_flight

    async def main() -> int:
        (flight,) = replicas(1)

        async def slow() -> dict[str, Any]:
            await asyncio.sleep(1.5)
            return {"ok": True}

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
