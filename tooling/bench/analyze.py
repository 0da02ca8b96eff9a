"""Benchmarks that print tables: every row measured in the same run on this machine.

`emotion-monitor bench analyze` measures /analyze with 250 posts from the JSONL source,
cold (cache entry deleted before each call) and warm (cache hit), beside the model-only
time for the same texts, and the truncation-length trade-off (time and agreement with
512-token classification).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tooling.bench.common import (
    keyword_texts,
    local_serve,
    machine_line,
    median_time,
    pct,
    table,
)
from tooling.bench.insights import INSIGHT_HEADERS, in_process_ms, insight_columns

if TYPE_CHECKING:
    pass


def truncation_sweep(
    model_dir: Path, texts_by_kw: dict[str, list[str]], lengths: Sequence[int], threads: int, repeats: int
) -> tuple[str, dict[int, float]]:
    from serve_app.model.predictor import OnnxPredictor

    ref = {
        kw: OnnxPredictor(model_dir, threads=threads, max_length=512).predict(t)
        for kw, t in texts_by_kw.items()
    }
    from serve_app.model.predictor import load_tokenizer
    from serve_app.model.preprocess import normalize_text

    whole = load_tokenizer(model_dir / "tokenizer.json", 100_000)
    full_lengths = [
        len(e.ids) for t in texts_by_kw.values() for e in whole.encode_batch([normalize_text(x) for x in t])
    ]
    rows, medians = [], {}
    for n in lengths:
        p = OnnxPredictor(model_dir, threads=threads, max_length=n)
        secs = [median_time(partial(p.probabilities, t), repeats) for t in texts_by_kw.values()]
        agree = [
            np.mean([a.label == b.label for a, b in zip(p.predict(t), ref[kw], strict=True)])
            for kw, t in texts_by_kw.items()
        ]
        truncated = float(np.mean([x > n for x in full_lengths]))
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
    """/analyze cold and cache-hit latency beside model-only time, for every task the
    artifact has a head for (the default /analyze). Model-only is one pass of the shared
    encoder with all heads; beside it, two passes: what two separate models would cost."""
    from serve_app.model.predictor import read_artifact_info

    texts = keyword_texts(jsonl, keywords)
    sweep, _ = truncation_sweep(model_dir, dict(list(texts.items())[:3]), lengths, 2, 2)
    out = [f"Machine: {machine_line()}", ""]
    out += ["### Truncation length (model only, INT8, 2 threads, batches of 32 sorted by length)", ""]
    out += [sweep, ""]
    model_only, separate = _model_only_times(model_dir, texts, repeats, max_length)
    tasks = read_artifact_info(model_dir).tasks
    with local_serve() as url:
        _deploy_analyze_app(model_dir, jsonl, tasks, max_length, redis_url)
        times = _time_analyses(url, model_dir, redis_url, texts, repeats)
        # The same app without drivers and representative posts: what they add.
        _deploy_analyze_app(model_dir, jsonl, tasks, max_length, redis_url, insights=False)
        plain = _time_analyses(url, model_dir, redis_url, texts, repeats)
    alone = in_process_ms(model_dir, jsonl, list(texts), repeats, max_length)
    rows = [
        _analyze_row(kw, times.cold[kw], times.warm[kw], times.rescored[kw], model_only[kw], separate[kw])
        + insight_columns(times.rescored[kw], plain.rescored[kw], alone[kw])
        for kw in texts
    ]
    rows.append(
        _analyze_row(
            "all",
            [x for v in times.cold.values() for x in v],
            [x for v in times.warm.values() for x in v],
            [x for v in times.rescored.values() for x in v],
            statistics.median(model_only.values()),
            statistics.median(separate.values()),
        )
        + insight_columns(
            [x for v in times.rescored.values() for x in v],
            [x for v in plain.rescored.values() for x in v],
            statistics.median(alone.values()),
        )
    )
    out += [
        f"### /analyze, 250 posts, jsonl source, tasks {' + '.join(tasks)} (one encoder), "
        f"max_length {max_length} ({repeats} cold calls per keyword, 5 cache hits after each, then "
        "one call whose answer expired but whose posts were all scored before)",
        "",
        table(ANALYZE_HEADERS + INSIGHT_HEADERS, rows),
    ]
    return "\n".join(out)


ANALYZE_HEADERS = [
    "keyword",
    "cold p50 s",
    "cold p99 s",
    "model-only s (median, one pass, all heads)",
    "cold / model-only",
    "two passes s (separate models' cost)",
    "posts scored before p50 ms",
    "cache-hit p50 ms",
    "cache-hit p99 ms",
]


def _model_only_times(
    model_dir: Path, texts: dict[str, list[str]], repeats: int, max_length: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Per keyword, the median seconds of one pass of the shared encoder with all heads, and
    of two passes (what two separate models would cost)."""
    from serve_app.model.predictor import OnnxPredictor

    model = OnnxPredictor(model_dir, threads=2, max_length=max_length)

    def two_passes(batch: Sequence[str]) -> None:
        model.probabilities_all(batch)
        model.probabilities_all(batch)

    one = {kw: median_time(partial(model.probabilities_all, t), repeats) for kw, t in texts.items()}
    two = {kw: median_time(partial(two_passes, t), repeats) for kw, t in texts.items()}
    model.session = None  # free its threads and memory before the app starts
    return one, two


def _deploy_analyze_app(
    model_dir: Path,
    jsonl: Path,
    tasks: list[str],
    max_length: int,
    redis_url: str | None,
    insights: bool = True,
) -> None:
    """The serving path alone: cache on, no history sync competing for the cores."""
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings

    stores = {"redis_url": redis_url, "postgres_url": None, "embedded": False}
    settings = Settings(stores=stores, background=False)
    args = AppArgs(
        model=ModelSettings(dir=model_dir, ort_threads=2, max_length=max_length),
        sources=SourcesSettings(default_source="jsonl", jsonl_path=jsonl),
        tasks=tasks,
        classifier_max_replicas=1,
        insights=insights,
    )
    serve.run(make_app(args, settings), name="emotion-monitor", route_prefix="/")


@dataclass
class AnalyzeTimes:
    """Seconds per keyword: cold answers, cache hits, and answers from posts scored before."""

    cold: dict[str, list[float]]
    warm: dict[str, list[float]]
    rescored: dict[str, list[float]]


def _time_analyses(
    url: str, model_dir: Path, redis_url: str | None, texts: dict[str, list[str]], repeats: int
) -> AnalyzeTimes:
    import httpx
    import redis

    from serve_app.model.predictor import read_artifact_info
    from serve_app.stores.cache import analysis_key

    info = read_artifact_info(model_dir)
    versions = dict.fromkeys(info.tasks, info.version)
    # Explicit tasks and threshold: the cache key below must be the ingress's.
    ask = {"limit": 250, "tasks": info.tasks, "negative_threshold": 0.8}
    rc = redis.Redis.from_url(redis_url) if redis_url else None
    http = httpx.Client(base_url=url, timeout=300)
    http.post("/analyze", json={**ask, "keyword": "warmup", "limit": 10})
    times = AnalyzeTimes({kw: [] for kw in texts}, {kw: [] for kw in texts}, {kw: [] for kw in texts})

    def timed(kw: str, into: list[float], expect: str) -> dict[str, Any]:
        t = time.perf_counter()
        r = http.post("/analyze", json={**ask, "keyword": kw})
        into.append(time.perf_counter() - t)
        assert r.status_code == 200 and r.json()["source"] == expect, r.text
        body: dict[str, Any] = r.json()
        return body

    for _ in range(repeats):
        for kw in texts:
            key = analysis_key(kw, 250, "jsonl", versions, negative_threshold=0.8)
            if rc is not None:
                rc.delete(key, *rc.scan_iter("em:score:*"))  # cold: no answer, no post scores
            timed(kw, times.cold[kw], "inference")
            if rc is None:
                continue
            for _ in range(5):
                timed(kw, times.warm[kw], "cache")
            # The answer expired but every post was scored before (per-post score cache).
            rc.delete(key)
            assert timed(kw, times.rescored[kw], "inference")["newly_scored"] == 0
    return times


def _analyze_row(
    name: str,
    cold: list[float],
    warm: list[float],
    rescored: list[float],
    model_only: float,
    separate: float,
) -> list[Any]:
    c50 = statistics.median(cold)
    return [
        name,
        c50,
        pct(cold, 99),
        model_only,
        f"{c50 / model_only:.2f}x",
        separate,
        1000 * statistics.median(rescored) if rescored else "n/a",
        1000 * statistics.median(warm) if warm else "n/a",
        1000 * pct(warm, 99) if warm else "n/a",
    ]
