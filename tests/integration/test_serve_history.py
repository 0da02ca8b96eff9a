"""History and warming through the running app: /analyze -> Redis -> PostgreSQL, exactly once."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
import redis

from serve_app.stores.cache import analysis_key
from tests.integration.conftest import CpuLoad

pytestmark = pytest.mark.integration


def pg_count(url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(sql, args).fetchone()
        return int(row[0]) if row else 0


def test_analysis_reaches_postgres_exactly_once(
    serve_url: str, app_pg_url: str, clean_cache: redis.Redis
) -> None:
    import ray

    from deployments.actor_loops import SYNC_ACTOR, get_actor

    r = httpx.post(
        f"{serve_url}/analyze", json={"keyword": "bicycle", "limit": 30, "source": "jsonl"}, timeout=120
    )
    assert r.status_code == 200 and r.json()["source"] == "inference"
    n = r.json()["scored"] * len(r.json()["tasks"])  # one prediction per scored post and task
    actor = get_actor(SYNC_ACTOR)
    for _ in range(2):  # a second forced pass changes nothing
        state = ray.get(actor.sync_now.remote())
        assert state.pending == 0 and state.last_forced_pass is not None
        assert state.last_forced_pass.error is None
        assert pg_count(app_pg_url, "SELECT count(*) FROM queries WHERE keyword_norm = %s", "bicycle") == 1
        assert (
            pg_count(
                app_pg_url,
                "SELECT count(*) FROM predictions JOIN queries USING (query_id) WHERE keyword_norm = %s",
                "bicycle",
            )
            == n
        )
    # A cache hit is not a new analysis: nothing new to sync.
    assert (
        httpx.post(
            f"{serve_url}/analyze", json={"keyword": "bicycle", "limit": 30, "source": "jsonl"}, timeout=60
        ).json()["source"]
        == "cache"
    )
    ray.get(actor.sync_now.remote())
    assert pg_count(app_pg_url, "SELECT count(*) FROM queries WHERE keyword_norm = %s", "bicycle") == 1


def test_sync_status_endpoint(serve_url: str) -> None:
    r = httpx.get(f"{serve_url}/sync/status", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["running"] is True and body["cpu_threshold"] == 20.0
    assert {"pending", "synced_total", "last_sync", "cpu", "cpu_pauses", "paused_reason"} <= set(body)


def _threshold(resp: dict[str, Any]) -> float | None:
    return (resp.get("strongly_negative") or {}).get("threshold")


def _warmer(redis_url: str, threshold: float) -> Any:
    from deployments.warmer_actor import WarmerActor, WarmerConfig
    from serve_app.config.settings import WarmerSettings

    return WarmerActor.remote(  # type: ignore[attr-defined]
        WarmerConfig(
            redis_url,
            seeds=(),
            settings=WarmerSettings(cpu_threshold=threshold, per_pass=3, refresh_below_s=300),
        )
    )


def test_warmer_refreshes_an_expiring_hot_keyword(serve_url: str, clean_cache: redis.Redis) -> None:
    import ray

    from tests.integration.conftest import TEST_REDIS_URL

    body = {"keyword": "tea", "limit": 250, "source": "jsonl"}
    first = httpx.post(f"{serve_url}/analyze", json=body, timeout=120).json()
    key = analysis_key("tea", 250, "jsonl", first["model_versions"], negative_threshold=_threshold(first))
    clean_cache.expire(key, 20)  # about to expire
    warmer = _warmer(TEST_REDIS_URL, threshold=100.0)  # 100: the CPU gate is off
    try:
        assert ray.get(warmer.warm_once.remote()) == 1
        assert clean_cache.ttl(key) > 3000
        assert ray.get(warmer.warm_once.remote()) == 0  # fresh now: nothing to do
    finally:
        ray.kill(warmer)


def test_warmer_does_nothing_under_load(serve_url: str, clean_cache: redis.Redis, cpu_load: CpuLoad) -> None:
    import ray

    from tests.integration.conftest import TEST_REDIS_URL

    body = {"keyword": "beer", "limit": 250, "source": "jsonl"}
    first = httpx.post(f"{serve_url}/analyze", json=body, timeout=120).json()
    key = analysis_key("beer", 250, "jsonl", first["model_versions"], negative_threshold=_threshold(first))
    clean_cache.expire(key, 60)
    warmer = _warmer(TEST_REDIS_URL, threshold=60.0)
    cpu_load.start()
    try:
        assert ray.get(warmer.warm_once.remote()) == 0
        assert clean_cache.ttl(key) <= 60
        assert "cpu" in (ray.get(warmer.status.remote()).paused_reason or "")
    finally:
        ray.kill(warmer)


def test_concurrent_analyses_all_reach_postgres_once(
    serve_url: str, app_pg_url: str, clean_cache: redis.Redis
) -> None:
    import asyncio

    import ray

    from deployments.actor_loops import SYNC_ACTOR, get_actor

    keywords = ["garden", "running", "weather", "startup", "anxiety", "college", "movies", "space"]

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=serve_url, timeout=180) as ac:
            rs = await asyncio.gather(
                *(ac.post("/analyze", json={"keyword": k, "limit": 20, "source": "jsonl"}) for k in keywords)
            )
            return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * len(keywords)
    state = ray.get(get_actor(SYNC_ACTOR).sync_now.remote())
    assert state.last_forced_pass is not None and state.last_forced_pass.error is None and state.pending == 0
    for k in keywords:
        assert pg_count(app_pg_url, "SELECT count(*) FROM queries WHERE keyword_norm = %s", k) == 1, k
