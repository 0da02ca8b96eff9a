"""The Reddit source failing under concurrent requests: bounded retries, clear 502/503/504."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.reddit_server import Faults, RedditTestServer
from tests.reliability.conftest import Report
from tests.reliability.services import PrivateRedis

pytestmark = pytest.mark.reliability


@pytest.fixture()
def faults(flaky_reddit: RedditTestServer, private_redis: PrivateRedis) -> Iterator[RedditTestServer]:
    flaky_reddit.state.faults = Faults()
    yield flaky_reddit
    flaky_reddit.state.faults = Faults()
    # A 429's Retry-After holds the shared request budget for every process: the next
    # fault's test starts with a fresh one.
    redis.Redis.from_url(private_redis.url).delete("em:reddit:budget:public")


async def burst(url: str, n: int) -> list[tuple[int, dict[str, str], str, float]]:
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> tuple[int, dict[str, str], str, float]:
            t0 = time.perf_counter()
            body = {"keyword": "python", "limit": 10 + i, "source": "reddit", "return_plot": False}
            r = await client.post(url + "/analyze", json=body)
            return r.status_code, dict(r.headers), r.json().get("detail", ""), time.perf_counter() - t0

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.parametrize(
    ("name", "fault", "status"),
    [
        ("slow (3 s per answer, timeout 1 s)", Faults(delay_s=3.0), 504),
        ("429 with Retry-After 30", Faults(status=429, count=10_000, retry_after=30), 503),
        ("500 on every request", Faults(status=500, count=10_000), 502),
    ],
)
def test_source_fault(
    rel_url: str, faults: RedditTestServer, report: Report, name: str, fault: Faults, status: int
) -> None:
    faults.state.faults = fault
    rows = asyncio.run(burst(rel_url, 8))
    slowest = max(r[3] for r in rows)
    report.add(
        f"Reddit source {name}",
        "8 concurrent /analyze",
        len(rows),
        None,
        None,
        None,
        f'all {status} in at most {slowest:.1f} s: "{rows[0][2][:80]}"',
    )
    assert [r[0] for r in rows] == [status] * len(rows), rows
    assert all("reddit" in r[2] for r in rows), rows
    if status == 503:
        assert all("retry-after" in r[1] for r in rows)
    # fetch_deadline_s is 6: no request may hang past it by much.
    assert slowest < 15, rows
