"""Faults under load: a killed replica, Redis and PostgreSQL crashes, an app restart.

Records are counted end to end: every /analyze answered from inference leaves one record,
and after the fault every one of them must be in PostgreSQL exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests.conftest import wait_for
from tests.reliability.conftest import APP, Report, deploy, undeploy
from tests.reliability.load import LoadResult, run_load
from tests.reliability.services import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.reliability

KEYWORDS = ["game", "music", "python", "coffee", "money", "travel", "movie", "dog", "work", "food"]


def analyze_cold(n: int) -> tuple[str, dict[str, Any]]:
    # A new (keyword, limit) pair nearly every time: a cache miss that runs inference.
    rnd = random.Random(n)
    return "/analyze", {"keyword": rnd.choice(KEYWORDS), "limit": rnd.randint(5, 60), "return_plot": False}


def predict_one(n: int) -> tuple[str, dict[str, Any]]:
    return "/predict", {"text": f"I can't believe this happened, day {n} of waiting"}


def mixed(n: int) -> tuple[str, dict[str, Any]]:
    return analyze_cold(n) if n % 3 == 0 else predict_one(n)


def inference_records(res: LoadResult) -> int:
    return sum(1 for path, _, body in res.bodies if path == "/analyze" and body["source"] == "inference")


def pg_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        q = c.execute("SELECT count(*), count(DISTINCT query_id) FROM queries").fetchone()
        p = c.execute("SELECT count(*) FROM predictions").fetchone()
        # One prediction per scored post and task: the exactly-once check covers both models.
        s = c.execute(
            "SELECT coalesce(sum(coalesce(n_scored, n_posts) * cardinality(tasks)), 0) FROM queries"
        ).fetchone()
    assert q and p and s
    return {"queries": q[0], "distinct": q[1], "predictions": p[0], "posts_expected": int(s[0])}


def sync_now() -> dict[str, Any]:
    import ray

    from deployments.actor_loops import get_actor, sync_actor_name
    from serve_app.domain.schemas import SyncStatus

    state: SyncStatus = ray.get(get_actor(sync_actor_name(APP)).sync_now.remote(), timeout=120)
    # The fault tests read the JSON form, as /sync/status serves it
    return state.model_dump()


@pytest.fixture()
def clean(rel_url: str, private_redis: PrivateRedis, private_pg: PrivatePostgres) -> Iterator[str]:
    from serve_app.stores.history_sql import migrate

    migrate(private_pg.url)

    def wipe() -> None:
        # Records the ingress still holds (journal) would reach Redis after the wipe and be
        # counted by the next test: wait until it holds none.
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            wait_for(lambda: held_by_ingress(rel_url) == 0, timeout=30, step=0.5)
        redis.Redis.from_url(private_redis.url).flushdb()
        with psycopg.connect(private_pg.url, autocommit=True) as c:
            c.execute("TRUNCATE queries, posts, predictions, query_aggregates CASCADE")

    wipe()
    yield rel_url
    wipe()


def held_by_ingress(url: str) -> int:
    """Records the (single) ingress replica holds in memory because Redis refused them."""
    return int(httpx.get(url + "/sync/status", timeout=30).json()["unsaved_in_ingress"])


def drained(url: str) -> dict[str, Any] | None:
    """The sync state once nothing is left anywhere between the API and PostgreSQL."""
    if held_by_ingress(url):
        return None
    s = sync_now()
    return s if s["pending"] == 0 else None


def analyses_held(url: str, keyword: str, limits: range) -> int:
    """Run cold analyses while Redis is down; each must answer and be held by the ingress."""
    made = 0
    for limit in limits:
        body = {"keyword": keyword, "limit": limit, "return_plot": False}
        r = httpx.post(url + "/analyze", json=body, timeout=60)
        assert r.status_code == 200, r.text
        made += r.json()["source"] == "inference"
    held = held_by_ingress(url)
    assert made == len(limits) and held == made, (made, held)
    return held


def classifier_replicas() -> list[dict[str, Any]]:
    from ray.util.state import list_actors

    return [
        {"name": a.name, "pid": a.pid}
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name == f"ServeReplica:{APP}:Classifier"
    ]


def running_replicas(deployment: str) -> int:
    from ray import serve

    app = serve.status().applications.get(APP)
    if app is None or deployment not in app.deployments:
        return 0
    return int(app.deployments[deployment].replica_states.get("RUNNING", 0))


def test_classifier_replica_killed_mid_load(clean: str, report: Report) -> None:
    import ray

    victims = classifier_replicas()
    assert len(victims) == 2, victims
    killed_at: list[float] = []
    healthy_at: list[float] = []

    def both_running() -> bool:
        return running_replicas("Classifier") == 2 and len(classifier_replicas()) == 2

    def watch() -> None:
        # Timed while the load still runs: Serve must replace the replica under load.
        if wait_for(both_running, 60, step=0.5):
            healthy_at.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)

    def kill() -> None:
        ray.kill(ray.get_actor(victims[0]["name"], namespace="serve"), no_restart=True)
        killed_at.append(time.monotonic())
        time.sleep(1)  # until Serve's controller has seen the replica die
        watcher.start()

    res = asyncio.run(run_load(clean, predict_one, workers=6, duration_s=20, events=[(5, kill)]))
    watcher.join(70)
    healthy = bool(healthy_at)
    recovery = (healthy_at[0] if healthy else time.monotonic()) - killed_at[0]
    new_names = {r["name"] for r in classifier_replicas()}
    report.add(
        "Classifier replica killed (`ray.kill`, 1 of 2)",
        "6 clients, /predict, 20 s",
        res.total,
        res.success_rate,
        None,
        recovery,
        f"{res.summary()}; replacement replica running {recovery:.0f} s after the kill",
    )
    assert victims[0]["name"] not in new_names
    assert healthy, "Serve did not bring the Classifier back to 2 replicas within 60 s"
    assert recovery < 30, f"healthy again only {recovery:.0f} s after the kill (issue 6: within 30 s)"
    assert res.success_rate >= 0.99, res.summary()
    assert set(res.statuses) <= {200, 503} and not res.errors, res.summary()
    assert res.retry_after_missing == 0


def test_redis_crash_and_restart_mid_load(clean: str, private_redis: PrivateRedis, report: Report,
                                          private_pg: PrivatePostgres) -> None:  # fmt: skip
    r = redis.Redis.from_url(private_redis.url)
    # Records written before the crash must survive it (the AOF is fsynced on every write).
    before = asyncio.run(run_load(clean, analyze_cold, workers=2, duration_s=4, keep_bodies=True))
    pending_before = r.scard("em:pending")
    assert pending_before > 0
    restarted: list[float] = []

    def restart() -> None:
        private_redis.start()
        restarted.append(time.monotonic())

    res = asyncio.run(
        run_load(clean, mixed, workers=4, duration_s=24, events=[(4, private_redis.kill), (12, restart)],
                 keep_bodies=True)
    )  # fmt: skip
    assert r.scard("em:pending") >= pending_before, "records pending before the crash were lost"
    # Caching resumes by itself: a repeated analysis is soon answered from the cache.
    body = {"keyword": "game", "limit": 7, "return_plot": False}

    probes: list[str] = []  # the source of every probe: each "inference" leaves a record

    def cached() -> bool:
        for _ in range(2):
            probes.append(httpx.post(clean + "/analyze", json=body, timeout=60).json()["source"])
        return probes[-1] == "cache"

    assert wait_for(cached, timeout=30, step=1)
    resumed = time.monotonic() - restarted[0]
    # Records held by the ingress while Redis was down are handed over by the ingress itself.
    made = inference_records(before) + inference_records(res) + probes.count("inference")
    state = wait_for(lambda: drained(clean), timeout=60, step=2)
    counts = pg_counts(private_pg.url)
    lost = made - counts["queries"]
    report.add(
        "Redis crashed (SIGKILL) for 8 s, restarted",
        "4 clients, /analyze misses + /predict, 24 s",
        res.total,
        res.success_rate,
        lost,
        resumed,
        f"{res.summary()}; {made} analyses, {counts['queries']} in PostgreSQL; cache hits again "
        f"{resumed:.0f} s after the restart",
    )
    assert state, "sync did not drain"
    assert res.success_rate >= 0.99, res.summary()
    assert lost == 0 and counts["distinct"] == counts["queries"]
    assert counts["predictions"] == counts["posts_expected"]


def test_records_held_during_a_redis_outage_are_handed_over_without_more_traffic(
    clean: str, private_redis: PrivateRedis, private_pg: PrivatePostgres, report: Report
) -> None:
    # No request follows the restart: the replica holding the records must offer them again
    # by itself (behind HAProxy another replica may get all the traffic from then on).
    private_redis.kill()
    try:
        made = held = analyses_held(clean, "coffee", range(11, 14))
    finally:
        private_redis.start()
        t0 = time.monotonic()
    handed = wait_for(lambda: held_by_ingress(clean) == 0, timeout=20, step=0.5)
    recovery = time.monotonic() - t0
    state = wait_for(lambda: drained(clean), timeout=60, step=2)
    counts = pg_counts(private_pg.url)
    report.add(
        "Redis down while analyses ran, restarted, then no traffic",
        "3 /analyze misses",
        made,
        1.0,
        made - counts["queries"],
        recovery,
        f"{held} records held by the ingress, handed to Redis {recovery:.1f} s after the restart "
        "with no further request, synced exactly once",
    )
    assert handed, "the ingress kept the records until a next request"
    assert state, "sync did not drain"
    assert counts["queries"] == made and counts["distinct"] == made


def test_postgres_crash_and_restart(clean: str, private_pg: PrivatePostgres, report: Report) -> None:
    res1 = asyncio.run(run_load(clean, analyze_cold, workers=2, duration_s=4, keep_bodies=True))
    # A record answered during a Redis hiccup (a restart still loading its AOF) waits in the
    # ingress's journal for a second or two: let it reach Redis, then sync everything.
    assert wait_for(lambda: drained(clean), timeout=60, step=1)
    synced_before = pg_counts(private_pg.url)["queries"]
    assert synced_before == inference_records(res1)
    private_pg.stop("immediate")
    try:
        res2 = asyncio.run(run_load(clean, mixed, workers=4, duration_s=10, keep_bodies=True))
        # As above: a record answered during a Redis hiccup reaches Redis from the journal a
        # moment later (CI saw 10 of 90 still there when the sync ran at once).
        assert wait_for(lambda: held_by_ingress(clean) == 0, timeout=60, step=1)
        state = sync_now()  # must fail cleanly and keep the backlog
        assert state["last_forced_pass"]["error"], state
        assert state["pending"] >= inference_records(res2), state
    finally:
        t0 = time.monotonic()
        private_pg.start()

    def synced_cleanly() -> dict[str, Any] | None:
        s = sync_now()
        return s if s["pending"] == 0 and s["last_forced_pass"]["error"] is None else None

    state = wait_for(synced_cleanly, timeout=60, step=2)
    recovery = time.monotonic() - t0
    again = sync_now()  # a second pass over the same records must not duplicate them
    counts = pg_counts(private_pg.url)
    made = inference_records(res1) + inference_records(res2)
    report.add(
        "PostgreSQL crashed (`pg_ctl -m immediate`), restarted after 10 s",
        "4 clients, /analyze misses + /predict, 10 s",
        res2.total,
        res2.success_rate,
        made - counts["queries"],
        recovery,
        f"{res2.summary()}; API unaffected; backlog of {inference_records(res2)} kept and synced "
        "exactly once after the restart",
    )
    assert state, "backlog did not drain after PostgreSQL came back"
    assert again["last_forced_pass"]["synced"] == 0
    assert res2.success_rate == 1.0, res2.summary()
    assert counts["queries"] == made and counts["distinct"] == made
    assert counts["predictions"] == counts["posts_expected"]


def test_app_restart_loses_nothing(clean: str, rel_settings: dict[str, Any], private_pg: PrivatePostgres,
                                   report: Report) -> None:  # fmt: skip
    res1 = asyncio.run(run_load(clean, analyze_cold, workers=2, duration_s=4, keep_bodies=True))
    sync_now()  # these are synced ...
    res2 = asyncio.run(run_load(clean, analyze_cold, workers=2, duration_s=4, keep_bodies=True))
    # ... and these are still pending in Redis when the app goes away.
    t0 = time.monotonic()
    undeploy()
    deploy(rel_settings, max_inflight=24, fetch_deadline_s=6)
    up = wait_for(lambda: httpx.get(clean + "/healthz", timeout=10).status_code == 200, timeout=60)
    recovery = time.monotonic() - t0
    state = wait_for(lambda: (s := sync_now())["pending"] == 0 and s, timeout=60, step=2)
    counts = pg_counts(private_pg.url)
    made = inference_records(res1) + inference_records(res2)
    report.add(
        "App stopped (`serve delete` + actors killed) and redeployed",
        "2 clients, /analyze misses, 2 x 4 s",
        res1.total + res2.total,
        (res1.ok + res2.ok) / (res1.total + res2.total),
        made - counts["queries"],
        recovery,
        f"{inference_records(res2)} records pending at the stop, all synced after the redeploy",
    )
    assert up and state
    assert counts["queries"] == made and counts["distinct"] == made


def test_records_held_at_a_graceful_shutdown_are_handed_over_if_redis_returns(
    clean: str, rel_settings: dict[str, Any], private_redis: PrivateRedis, private_pg: PrivatePostgres,
    report: Report,
) -> None:  # fmt: skip
    # The app is deleted while Redis is down and its ingress holds records; Redis comes back
    # during the replica's graceful shutdown, which must wait for it rather than drop them.
    private_redis.kill()
    back = threading.Timer(5, private_redis.start)  # after Serve's drain of about 3 s
    try:
        made = held = analyses_held(clean, "travel", range(13, 15))
        back.start()
        t0 = time.monotonic()
        undeploy()
        stopped = time.monotonic() - t0
    finally:
        back.cancel()
        if back.is_alive():
            back.join()
        if private_redis.proc is None:
            private_redis.start()
    deploy(rel_settings, max_inflight=24, fetch_deadline_s=6)
    up = wait_for(lambda: httpx.get(clean + "/healthz", timeout=10).status_code == 200, timeout=60)
    state = wait_for(lambda: drained(clean), timeout=60, step=2)
    counts = pg_counts(private_pg.url)
    report.add(
        "App deleted while Redis was down, Redis back 5 s later",
        "2 /analyze misses held by the ingress",
        made,
        1.0,
        made - counts["queries"],
        None,
        f"{held} records held at the stop; `serve delete` took {stopped:.1f} s; all synced after "
        "the redeploy",
    )
    assert up and state
    assert counts["queries"] == made and counts["distinct"] == made


def ingress_pids() -> list[int]:
    from ray.util.state import list_actors

    return [
        int(a.pid)
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name == f"ServeReplica:{APP}:Ingress" and a.pid
    ]


def test_kill_9_of_the_ingress_while_redis_is_down_loses_nothing(
    clean: str, private_redis: PrivateRedis, private_pg: PrivatePostgres, report: Report
) -> None:
    # Answered while Redis is down: each record is fsynced in the replica's journal before the
    # answer leaves. The replica is then killed with SIGKILL (no shutdown code runs); its
    # replacement adopts the journal once Redis is back, with no request needed.
    import os
    import signal

    private_redis.kill()
    try:
        made = analyses_held(clean, "music", range(21, 24))
        (pid,) = ingress_pids()
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        replaced = wait_for(lambda: (p := ingress_pids()) and p[0] != pid and running_replicas("Ingress"), 60)
    finally:
        private_redis.start()
    synced = wait_for(
        lambda: drained(clean) and pg_counts(private_pg.url)["queries"] == made, timeout=90, step=2
    )
    recovery = time.monotonic() - t0
    counts = pg_counts(private_pg.url)
    report.add(
        "Ingress replica `kill -9` while Redis was down, Redis back after the replacement started",
        "3 /analyze misses answered during the outage",
        made,
        1.0,
        made - counts["queries"],
        recovery,
        f"{made} records fsynced in the replica's journal before each answer; the replacement "
        f"replica handed them to Redis by itself; synced exactly once",
    )
    assert replaced, "Serve did not replace the killed ingress replica"
    assert synced, counts
    assert counts["queries"] == made and counts["distinct"] == made


def test_monitor_polls_through_a_redis_outage_and_an_actor_kill_lose_nothing(
    clean: str, private_redis: PrivateRedis, private_pg: PrivatePostgres, report: Report
) -> None:
    # A watched keyword polled while Redis is down: the poll's record is fsynced in the
    # ingress's journal. The monitor actor is then killed (SIGKILL) and Ray restarts it; after
    # Redis returns, every poll is in PostgreSQL exactly once.
    import os
    import signal

    import ray
    from ray.util.state import list_actors

    from deployments.actor_loops import get_actor, monitor_actor_name

    def poll() -> int:
        return int(ray.get(get_actor(monitor_actor_name(APP)).run_once.remote(True), timeout=120))

    r = httpx.post(
        clean + "/watch", json={"keyword": "coffee", "every_s": 60, "source": "jsonl", "limit": 30}
    )
    assert r.status_code == 201, r.text
    try:
        polls = poll()
        private_redis.kill()
        try:
            polls += poll()  # answered; its record waits in the journal
            (actor,) = [
                a
                for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                if a.name == monitor_actor_name(APP)
            ]
            os.kill(int(actor.pid), signal.SIGKILL)
            t0 = time.monotonic()
            restarted = wait_for(lambda: poll() == 1, timeout=60, step=2)  # the restarted actor polls
            polls += 1
        finally:
            private_redis.start()
        synced = wait_for(
            lambda: drained(clean) and pg_counts(private_pg.url)["queries"] == polls, timeout=90, step=2
        )
        recovery = time.monotonic() - t0
        counts = pg_counts(private_pg.url)
    finally:
        httpx.delete(clean + "/watch/coffee")
    report.add(
        "Keyword monitor: Redis down during a poll, the monitor actor `kill -9`ed, Redis back",
        "a watched keyword, 3 forced polls",
        polls,
        1.0,
        polls - counts["queries"],
        recovery,
        "the poll made while Redis was down waited in the ingress journal; Ray restarted the actor, "
        "which polled again; every poll synced exactly once",
    )
    assert restarted and synced, counts
    assert counts["queries"] == polls and counts["distinct"] == polls
    assert counts["predictions"] == counts["posts_expected"]
