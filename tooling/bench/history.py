"""`emotion-monitor bench hold | sync`: what a history record costs to hand over (Redis vs the
fsynced journal), the sync's throughput, and /predict p99 with the sync on vs off."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tooling.bench.common import (
    load_predict,
    local_serve,
    machine_line,
    pct,
    table,
)

if TYPE_CHECKING:
    from serve_app.domain.records import HistoryRecord


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

    from serve_app.stores.history_sql import migrate

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
    from serve_app.config.settings import ModelSettings, Settings
    from serve_app.stores.history import PENDING, store_record

    r = redis.Redis.from_url(redis_url)
    with local_serve() as url:
        stores = {"redis_url": redis_url, "postgres_url": postgres_url, "embedded": False}
        settings = Settings(stores=stores, background=True, warmer={"per_pass": 0})
        app = make_app(AppArgs(model=ModelSettings(dir=model_dir), classifier_max_replicas=1), settings)
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
