"""A bounded asyncio load on loopback, recording every outcome (status, latency, body)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Request = Callable[[int], tuple[str, dict[str, Any]]]  # worker's n-th request -> (path, json)


@dataclass
class LoadResult:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # transport errors
    bodies: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    retry_after_missing: int = 0  # 503/429 answers without a Retry-After header
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def success_rate(self) -> float:
        return self.ok / self.total if self.total else 0.0

    @property
    def p99(self) -> float:
        if not self.latencies:
            return 0.0
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))]

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        errs = ", ".join(f"{k}: {v}" for k, v in self.errors.items())
        return f"{self.total} requests in {self.seconds:.0f} s ({codes}{'; ' + errs if errs else ''})"


async def run_load(
    base_url: str,
    make_request: Request,
    workers: int,
    duration_s: float,
    events: list[tuple[float, Callable[[], Awaitable[None] | None]]] | None = None,
    timeout_s: float = 60.0,
    keep_bodies: bool = False,
) -> LoadResult:
    """`workers` closed-loop clients for `duration_s`; `events` run at their offsets (faults)."""
    result = LoadResult()
    started = time.monotonic()
    stop_at = started + duration_s

    async def worker(w: int, client: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < stop_at:
            path, body = make_request(w * 1_000_000 + n)
            n += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                result.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.1)
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.statuses[r.status_code] += 1
            if r.status_code in (429, 503) and "retry-after" not in r.headers:
                result.retry_after_missing += 1
            if r.status_code in (429, 503):
                await asyncio.sleep(min(1.0, float(r.headers.get("retry-after", 1))))
            if keep_bodies and r.status_code == 200:
                result.bodies.append((path, r.status_code, r.json()))

    async def fire() -> None:
        for offset, action in sorted(events or [], key=lambda e: e[0]):
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            out = await asyncio.to_thread(action)
            if asyncio.iscoroutine(out):
                await out

    limits = httpx.Limits(max_connections=workers + 4, max_keepalive_connections=workers + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        await asyncio.gather(fire(), *(worker(w, client) for w in range(workers)))
    result.seconds = time.monotonic() - started
    return result
