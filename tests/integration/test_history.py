"""History: Redis -> PostgreSQL sync, exactly once, through faults; BI views."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
import redis

from serve_app.domain.labels import EMOTION_LABELS
from serve_app.stores.history import (
    PENDING,
    REC_PREFIX,
    HistorySync,
    hot_keywords,
    insert_records,
    store_record,
    track_keyword,
)
from serve_app.stores.history_sql import migrate, migration_files
from tests.conftest import wait_for
from tests.integration.conftest import CpuLoad
from tests.records import history_record

pytestmark = pytest.mark.integration

DAY = 86_400
# 25 records of three posts each: one aggregate row per emotion label per record.
ALL_25 = {"queries": 25, "posts": 75, "predictions": 75, "query_aggregates": 25 * len(EMOTION_LABELS)}
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(
    keyword: str,
    labels: list[str],
    t: float = T0,
    offset: int = 0,
    source: str = "jsonl",
    model_version: str = "test-v1",
) -> dict:
    posts = [
        {
            "id": f"{keyword.lower()[:3]}{offset + i}",
            "title": f"post {i} about {keyword}",
            "body": "b",
            "subreddit": "s",
            "created_utc": t - 100,
            "score": i,
            "url": f"https://x/{i}",
        }
        for i in range(len(labels))
    ]
    preds = [
        {
            "label": lab,
            "confidence": 0.5 + 0.1 * (i % 5),
            "scores": {x: (0.5 + 0.1 * (i % 5) if x == lab else 0.1) for x in EMOTION_LABELS},
        }
        for i, lab in enumerate(labels)
    ]
    agg = [
        {"label": x, "pct": 100.0 * labels.count(x) / len(labels), "count": labels.count(x), "avg_score": 0.6}
        for x in EMOTION_LABELS
    ]
    return history_record(
        keyword,
        posts,
        {"emotion": preds},
        source=source,
        created_at=t,
        breakdowns={"agg": agg},
        model_versions={"emotion": model_version},
    )


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return {
            t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("queries", "posts", "predictions", "query_aggregates")
        }


def drain(sync: HistorySync) -> int:
    n = 0
    while sync.pending():
        n += sync.sync_batch().synced
    return n


def test_migrations_are_recorded_and_idempotent(pg_url: str) -> None:
    assert migrate(pg_url) == []  # the fixture applied them already
    with psycopg.connect(pg_url) as c:
        recorded = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded[:7] == [
        "0001_history",
        "0002_sentiment_and_languages",
        "0003_strongly_negative",
        "0004_neutral_and_intervals",
        "0005_partial_and_hygiene",
        "0006_watchlists",
        "0007_daily_by_model_version",
    ]
    assert recorded == [version for version, _ in migration_files()]  # and every later one


def test_sync_moves_n_analyses_with_exact_row_counts_and_twice_is_a_noop(
    clean_history: tuple[str, redis.Redis],
) -> None:
    url, r = clean_history
    recs = [record(f"kw{i}", ["joy", "anger", "fear"], offset=10 * i) for i in range(25)]
    for rec in recs:
        store_record(r, rec)
    assert r.scard(PENDING) == 25
    sync = HistorySync(r, url, batch_size=10)
    assert drain(sync) == 25
    assert counts(url) == {
        "queries": 25,
        "posts": 75,
        "predictions": 75,
        "query_aggregates": 25 * len(EMOTION_LABELS),
    }
    assert r.scard(PENDING) == 0
    assert 0 < r.ttl(REC_PREFIX + recs[0]["query_id"]) <= 86_400  # kept for recovery, then expires

    for rec in recs:  # everything queued again: nothing changes
        r.sadd(PENDING, rec["query_id"])
    assert drain(sync) == 25
    assert counts(url) == {
        "queries": 25,
        "posts": 75,
        "predictions": 75,
        "query_aggregates": 25 * len(EMOTION_LABELS),
    }


def test_killed_connection_mid_sync_loses_and_duplicates_nothing(
    clean_history: tuple[str, redis.Redis],
) -> None:
    url, r = clean_history
    recs = [record(f"k{i}", ["sadness", "joy"], offset=10 * i) for i in range(12)]
    for rec in recs:
        store_record(r, rec)
    sync = HistorySync(r, url, batch_size=5)
    assert sync.sync_batch().synced == 5
    pid = sync._connection().info.backend_pid
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        sync.sync_batch()
    assert r.scard(PENDING) == 7  # the failed batch stayed pending
    assert drain(sync) == 7  # reconnects by itself
    assert counts(url)["queries"] == 12 and counts(url)["predictions"] == 24


def test_crash_between_commit_and_srem_is_harmless(clean_history: tuple[str, redis.Redis]) -> None:
    url, r = clean_history
    rec = record("crash", ["love", "love", "joy"])
    store_record(r, rec)
    with psycopg.connect(url) as c:  # PostgreSQL committed, but the ids never left Redis
        insert_records(c, [rec])
        c.commit()
    assert drain(HistorySync(r, url)) == 1
    assert counts(url) == {
        "queries": 1,
        "posts": 3,
        "predictions": 3,
        "query_aggregates": len(EMOTION_LABELS),
    }


def test_recovery_backfills_records_written_behind_the_sync(clean_history: tuple[str, redis.Redis]) -> None:
    url, r = clean_history
    sync = HistorySync(r, url)
    synced = record("synced", ["joy"])
    store_record(r, synced)
    drain(sync)
    hidden = [record(f"hidden{i}", ["fear", "anger"], offset=10 * i) for i in range(3)]
    for rec in hidden:  # in Redis, but never marked pending
        r.set(REC_PREFIX + rec["query_id"], json.dumps(rec))
    assert sync.pending() == 0
    assert sync.recover() == 3
    assert sync.recover() == 0  # already queued
    assert drain(sync) == 3
    assert counts(url)["queries"] == 4


def test_bi_views_return_the_expected_numbers(clean_history: tuple[str, redis.Redis]) -> None:
    url, r = clean_history
    recs = [
        record("AI", ["joy", "joy", "anger", "fear"], t=T0 + 3600),
        # Same posts re-analysed later the same day: counted once, with the later label.
        record("ai", ["joy", "joy", "joy", "fear"], t=T0 + 7200),
        record("AI", ["sadness", "sadness"], t=T0 + DAY + 60, offset=100),
        record("python", ["joy"], t=T0 + 60),
        # A new model (with "no clear emotion") rolls out on day 2: its shares are its own,
        # not mixed with the old model's; a post both labelled counts under the later one.
        record("AI", ["neutral", "neutral", "anger"], t=T0 + DAY + 3600, offset=101, model_version="v7"),
    ]
    for rec in recs:
        store_record(r, rec)
    drain(HistorySync(r, url))
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT keyword, day::text, model_version, label, posts, pct::float, pct_of_emotional::float "
            "FROM v_emotion_daily ORDER BY keyword, day, model_version, label"
        ).fetchall()
        assert rows == [
            ("ai", "2026-01-01", "test-v1", "fear", 1, 25.0, 25.0),
            ("ai", "2026-01-01", "test-v1", "joy", 3, 75.0, 75.0),
            ("ai", "2026-01-02", "test-v1", "sadness", 1, 100.0, 100.0),
            ("ai", "2026-01-02", "v7", "anger", 1, 33.33, 100.0),
            ("ai", "2026-01-02", "v7", "neutral", 2, 66.67, None),
            ("python", "2026-01-01", "test-v1", "joy", 1, 100.0, 100.0),
        ]
        scatter = c.execute(
            "SELECT label, confidence FROM v_confidence_by_label WHERE keyword='python'"
        ).fetchall()
        assert scatter == [("joy", pytest.approx(0.5))]
        n = c.execute("SELECT count(*) FROM v_confidence_by_label").fetchone()
        assert n == (14,)
        c.execute("UPDATE queries SET created_at = now() - interval '2 hours' WHERE keyword_norm = 'python'")
        c.execute("UPDATE queries SET created_at = now() - interval '10 minutes' WHERE keyword_norm = 'ai'")
        hot = c.execute(
            "SELECT keyword, queries_1h, queries_24h, queries_7d FROM v_hot_keywords ORDER BY keyword"
        ).fetchall()
        assert hot == [("ai", 4, 4, 4), ("python", 0, 1, 1)]


def test_hot_keywords_rank_recent_queries(clean_history: tuple[str, redis.Redis]) -> None:
    _, r = clean_history
    now = time.time()
    for _ in range(3):
        track_keyword(r, "AI ", 250, "jsonl", now)
    track_keyword(r, "python", 250, "jsonl", now - 3 * 3600)
    track_keyword(r, "old", 250, "jsonl", now - 30 * 3600)  # outside the 24 h window
    assert [(k, n) for k, _, _, n in hot_keywords(r, now=now)] == [("ai", 3.0), ("python", 1.0)]


# ------------------------------------------------------------------ the Ray actor


def test_actor_syncs_nothing_under_load_then_drains(
    ray_session: str,
    clean_history: tuple[str, redis.Redis],
    cpu_load: CpuLoad,
) -> None:
    import ray

    from deployments.sync_actor import SyncActor, SyncConfig
    from serve_app.config.settings import SyncSettings

    url, r = clean_history
    for i in range(6):
        store_record(r, record(f"load{i}", ["joy", "fear"], offset=10 * i))
    redis_url = r.connection_pool.connection_kwargs
    cfg = SyncConfig(
        redis_url=f"redis://{redis_url['host']}:{redis_url['port']}/{redis_url['db']}",
        postgres_url=url,
        settings=SyncSettings(cpu_threshold=60.0, batch_size=2, recovery_interval_s=3600),
        sample_s=0.5,
    )
    cpu_load.start()
    actor = SyncActor.remote(cfg)  # type: ignore[attr-defined]
    try:
        ray.get(actor.start.remote())
        # The loop must have sampled the CPU and held back several times (not merely been slow).
        assert wait_for(lambda: ray.get(actor.status.remote()).cpu_pauses >= 5, timeout=30)
        state = ray.get(actor.status.remote())
        assert state.synced_total == 0 and counts(url)["queries"] == 0
        assert "cpu" in (state.paused_reason or "")
        cpu_load.stop()
        assert wait_for(lambda: counts(url)["queries"] == 6, timeout=60), ray.get(actor.status.remote())
        assert wait_for(lambda: ray.get(actor.status.remote()).pending == 0, timeout=10)
        assert ray.get(actor.status.remote()).synced_total == 6
    finally:
        ray.kill(actor)


def test_actor_pauses_through_a_postgres_outage_and_keeps_the_backlog(
    ray_session: str, clean_history: tuple[str, redis.Redis]
) -> None:
    import ray

    from deployments.sync_actor import SyncActor, SyncConfig
    from serve_app.config.settings import SyncSettings

    url, r = clean_history
    for i in range(4):
        store_record(r, record(f"out{i}", ["anger"], offset=10 * i))
    kw = r.connection_pool.connection_kwargs
    bad = SyncConfig(
        redis_url=f"redis://{kw['host']}:{kw['port']}/{kw['db']}",
        postgres_url="postgresql://postgres@127.0.0.1:1/none",
        settings=SyncSettings(cpu_threshold=100.0),
    )
    actor = SyncActor.remote(bad)  # type: ignore[attr-defined]
    try:
        state = ray.get(actor.sync_now.remote())
        assert state.last_forced_pass is not None
        assert "OperationalError" in (state.last_forced_pass.error or "")
        assert r.scard(PENDING) == 4 and counts(url)["queries"] == 0
        ray.get(actor.configure.remote(SyncConfig(**{**bad.__dict__, "postgres_url": url})))
        state = ray.get(actor.sync_now.remote())  # PostgreSQL is back
        assert state.pending == 0 and state.synced_total == 4
        assert state.last_forced_pass is not None
        assert state.last_forced_pass.model_dump() == {
            "at": pytest.approx(time.time(), abs=30),
            "synced": 4,
            "error": None,
        }
        assert counts(url)["queries"] == 4
    finally:
        ray.kill(actor)


def test_two_tasks_and_excluded_languages_land_in_their_tables(
    clean_history: tuple[str, redis.Redis],
) -> None:
    url, r = clean_history
    langs = ["en", "en", "es", "und"]
    posts = [
        {"id": f"m{i}", "title": f"t{i}", "body": "", "subreddit": "s", "created_utc": T0, "score": 1,
         "url": "", "lang": lg, "lang_confidence": 0.9}
        for i, lg in enumerate(langs)
    ]  # fmt: skip
    kept = [0, 1, 3]  # the Spanish post is left out
    emo = [{"label": "joy", "confidence": 0.9, "scores": {"joy": 0.9}} for _ in kept]
    sen = [
        {"label": lab, "confidence": c, "scores": {lab: c}}
        for lab, c in [("negative", 0.95), ("positive", 0.7), ("negative", 0.6)]
    ]
    agg = [{"label": "joy", "pct": 100.0, "count": 3, "avg_score": 0.9}]
    sagg = [
        {"label": "negative", "pct": 66.67, "count": 2, "avg_score": 0.78},
        {"label": "positive", "pct": 33.33, "count": 1, "avg_score": 0.7},
    ]
    rec = history_record(
        "Mixed", posts, {"emotion": emo, "sentiment": sen}, limit=4,
        created_at=T0, kept=kept, breakdowns={"agg": agg, "sentiment_agg": sagg},
        model_versions={"emotion": "emo-v1", "sentiment": "sen-v1"},
        strongly_negative={"threshold": 0.8, "count": 1, "pct": 33.33, "ids": ["m0"]},
        partial_reason="page 2 failed (HTTP 500)", excluded={"language": 1, "duplicate": 2},
    )  # fmt: skip
    assert rec["posts"][2]["predictions"] == {}  # left out for its language: no prediction
    store_record(r, rec)
    assert drain(HistorySync(r, url)) == 1
    with psycopg.connect(url) as c:
        by_task = dict(c.execute("SELECT task, count(*) FROM predictions GROUP BY task").fetchall())
        q = c.execute("SELECT tasks, model_versions, n_scored, n_strongly_negative FROM queries").fetchone()
        partial = c.execute("SELECT partial_reason, excluded FROM queries").fetchone()
        agg_rows = c.execute("SELECT count(*) FROM query_aggregates WHERE task = 'sentiment'").fetchone()
        daily = dict(
            c.execute("SELECT label, posts FROM v_sentiment_daily WHERE keyword = 'mixed'").fetchall()
        )
        lang_rows = dict(c.execute("SELECT lang, posts FROM v_languages").fetchall())
        urgent = c.execute(
            "SELECT post_id, confidence, negative_threshold, title FROM v_strongly_negative"
        ).fetchall()
        stored_langs = dict(c.execute("SELECT post_id, lang FROM posts").fetchall())
    assert by_task == {"emotion": 3, "sentiment": 3}
    assert q == (["emotion", "sentiment"], {"emotion": "emo-v1", "sentiment": "sen-v1"}, 3, 1)
    assert agg_rows == (2,)
    assert partial == ("page 2 failed (HTTP 500)", {"language": 1, "duplicate": 2})
    assert daily == {"negative": 2, "positive": 1}
    assert lang_rows == {"en": 2, "es": 1, "und": 1}
    # Only m0 is negative at >= 0.8 (m3 is negative at 0.6): the triage view lists it alone.
    assert [(u[0], round(u[1], 2), round(u[2], 2), u[3]) for u in urgent] == [("m0", 0.95, 0.8, "t0")]
    assert stored_langs["m2"] == "es"


def test_a_record_written_before_format_2_still_syncs(clean_history: tuple[str, redis.Redis]) -> None:
    """Records an older version left pending in Redis (or in a journal) across an upgrade:
    emotion at the top level of each post, a breakdown field per task."""
    url, r = clean_history
    old = {
        "query_id": "old-format-1",
        "keyword": "Upgrade", "keyword_norm": "upgrade", "source": "jsonl", "limit": 2, "lang": "en",
        "model_version": "emo-0", "model_versions": {"emotion": "emo-0", "sentiment": "sen-0"},
        "tasks": ["emotion", "sentiment"], "created_at": T0,
        "agg": [{"label": "joy", "pct": 50.0, "count": 1, "avg_score": 0.9},
                {"label": "neutral", "pct": 50.0, "count": 1, "avg_score": 0.8}],
        "emotional_agg": [{"label": "joy", "pct": 100.0, "count": 1, "avg_score": 0.9}],
        "sentiment_agg": [{"label": "positive", "pct": 100.0, "count": 2, "avg_score": 0.7}],
        "breakdown_methods": {"emotion": "cc"}, "n_scored": 2, "strongly_negative": None,
        "languages": {"en": 2},
        "posts": [
            {"id": f"u{i}", "title": "t", "body": "", "subreddit": "s", "created_utc": T0, "score": 1,
             "url": "", "lang": "en", "lang_confidence": 0.9, "label": lab, "confidence": c,
             "scores": {lab: c},
             "sentiment": {"label": "positive", "confidence": 0.7, "scores": {"positive": 0.7}}}
            for i, (lab, c) in enumerate([("joy", 0.9), ("neutral", 0.8)])
        ],
    }  # fmt: skip
    store_record(r, old)
    assert drain(HistorySync(r, url)) == 1
    with psycopg.connect(url) as c:
        preds = c.execute(
            "SELECT post_id, task, model_version, label FROM predictions ORDER BY post_id, task"
        ).fetchall()
        aggs = c.execute(
            "SELECT task, label, pct, pct_among FROM query_aggregates ORDER BY task, label"
        ).fetchall()
        (qid,) = c.execute("SELECT query_id FROM queries").fetchone()  # type: ignore[misc]
    assert qid == "old-format-1"
    assert preds == [
        ("u0", "emotion", "emo-0", "joy"),
        ("u0", "sentiment", "sen-0", "positive"),
        ("u1", "emotion", "emo-0", "neutral"),
        ("u1", "sentiment", "sen-0", "positive"),
    ]
    assert aggs == [
        ("emotion", "joy", 50.0, 100.0),
        ("emotion", "neutral", 50.0, None),
        ("sentiment", "positive", 100.0, None),
    ]
