"""Benchmarks that print tables: every row measured in the same run on this machine.

`emotion-monitor bench analyze` measures /analyze with 250 posts from the JSONL source,
cold (cache entry deleted before each call) and warm (cache hit), beside the model-only
time for the same texts, and the truncation-length trade-off (time and agreement with
512-token classification).
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


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


def truncation_sweep(
    model_dir: Path, texts_by_kw: dict[str, list[str]], lengths: Sequence[int], threads: int, repeats: int
) -> tuple[str, dict[int, float]]:
    from serve_app.predictor import OnnxPredictor

    ref = {
        kw: OnnxPredictor(model_dir, threads=threads, max_length=512).predict(t)
        for kw, t in texts_by_kw.items()
    }
    rows, medians = [], {}
    for n in lengths:
        p = OnnxPredictor(model_dir, threads=threads, max_length=n)
        secs = [median_time(partial(p.probabilities, t), repeats) for t in texts_by_kw.values()]
        agree = [
            np.mean([a.label == b.label for a, b in zip(p.predict(t), ref[kw], strict=True)])
            for kw, t in texts_by_kw.items()
        ]
        toks = [len(x) for t in texts_by_kw.values() for x in p.encode(t)]
        truncated = float(np.mean([x >= n for x in toks]))
        medians[n] = statistics.median(secs)
        rows.append(
            [
                n,
                medians[n],
                250 / medians[n],
                f"{100 * truncated:.0f}%",
                f"{100 * float(np.mean(agree)):.1f}%",
            ]
        )
    return (
        table(
            [
                "max tokens",
                "model s / 250 posts (median)",
                "posts/s",
                "posts truncated",
                "label agreement with 512",
            ],
            rows,
        ),
        medians,
    )


def bench_analyze(
    model_dir: Path,
    jsonl: Path,
    keywords: Sequence[str],
    repeats: int,
    max_length: int,
    redis_url: str | None,
    lengths: Sequence[int],
) -> str:
    import httpx
    import ray
    import redis
    from ray import serve

    from deployments.fetcher import JsonlCorpus
    from serve_app.app import AppArgs, build_app
    from serve_app.cache import cache_key
    from serve_app.predictor import OnnxPredictor, read_artifact_info
    from serve_app.preprocess import post_text
    from serve_app.settings import Settings

    corpus = JsonlCorpus.from_file(jsonl)
    texts = {kw: [post_text(p.title, p.body) for p in corpus.search(kw, 250)] for kw in keywords}
    texts = {kw: t for kw, t in texts.items() if len(t) == 250}
    out = [f"Machine: {machine_line()}", ""]

    sweep, _ = truncation_sweep(model_dir, dict(list(texts.items())[:3]), lengths, 2, 2)
    out += [
        "### Truncation length (model only, INT8, 2 threads, batches of 32 sorted by length)",
        "",
        sweep,
        "",
    ]

    model = OnnxPredictor(model_dir, threads=2, max_length=max_length)
    model_only = {kw: median_time(partial(model.probabilities, t), repeats) for kw, t in texts.items()}
    del model  # free its threads and memory before the app starts

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=tempfile.mkdtemp(prefix="em-bench-"),
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(redis_url=redis_url)
        serve.run(
            build_app(
                AppArgs(
                    model_dir=str(model_dir),
                    default_source="jsonl",
                    jsonl_path=str(jsonl),
                    classifier_max_replicas=1,
                    max_length=max_length,
                ),
                settings,
            ),
            name="emotion-monitor",
            route_prefix="/",
        )
        version = read_artifact_info(model_dir).version
        rc = redis.Redis.from_url(redis_url) if redis_url else None
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        http.post("/analyze", json={"keyword": "warmup", "limit": 10})
        cold: dict[str, list[float]] = {kw: [] for kw in texts}
        warm: dict[str, list[float]] = {kw: [] for kw in texts}
        for _ in range(repeats):
            for kw in texts:
                if rc is not None:
                    rc.delete(cache_key(kw, 250, "jsonl", version))
                t = time.perf_counter()
                r = http.post("/analyze", json={"keyword": kw, "limit": 250})
                cold[kw].append(time.perf_counter() - t)
                assert r.status_code == 200 and r.json()["source"] == "inference", r.text
                for _ in range(5 if rc is not None else 0):
                    t = time.perf_counter()
                    r = http.post("/analyze", json={"keyword": kw, "limit": 250})
                    warm[kw].append(time.perf_counter() - t)
                    assert r.json()["source"] == "cache"
        rows = []
        for kw in texts:
            c50 = statistics.median(cold[kw])
            rows.append(
                [
                    kw,
                    c50,
                    pct(cold[kw], 99),
                    model_only[kw],
                    f"{100 * (c50 / model_only[kw] - 1):+.0f}%",
                    1000 * statistics.median(warm[kw]) if warm[kw] else "n/a",
                    1000 * pct(warm[kw], 99) if warm[kw] else "n/a",
                ]
            )
        all_cold = [x for v in cold.values() for x in v]
        all_warm = [x for v in warm.values() for x in v]
        rows.append(
            [
                "all",
                statistics.median(all_cold),
                pct(all_cold, 99),
                statistics.median(model_only.values()),
                f"{100 * (statistics.median(all_cold) / statistics.median(model_only.values()) - 1):+.0f}%",
                1000 * statistics.median(all_warm) if all_warm else "n/a",
                1000 * pct(all_warm, 99) if all_warm else "n/a",
            ]
        )
        out += [
            f"### /analyze, 250 posts, jsonl source, max_length {max_length} "
            f"({repeats} cold calls per keyword, 5 cache hits after each)",
            "",
            table(
                [
                    "keyword",
                    "cold p50 s",
                    "cold p99 s",
                    "model-only s (median)",
                    "cold over model",
                    "cache-hit p50 ms",
                    "cache-hit p99 ms",
                ],
                rows,
            ),
        ]
    finally:
        serve.shutdown()
        ray.shutdown()
    return "\n".join(out)
