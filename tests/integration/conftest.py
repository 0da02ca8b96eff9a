"""Session-scoped real infrastructure: a local Ray with Serve, Redis, the Reddit test server."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import DATA_ROOT, MODEL_DIR, service_unavailable
from tests.reddit_server import RedditTestServer, make_post
from tests.webhook_receiver import WebhookReceiver

TEST_REDIS_URL = os.environ.get("EMOTION_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"no Redis at {TEST_REDIS_URL}: {exc} (run scripts/services.sh)")
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def reddit_server() -> Iterator[RedditTestServer]:
    posts = [make_post(i, f"I love my new python project {i}", "so happy") for i in range(60)]
    with RedditTestServer(posts) as srv:
        yield srv


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture(scope="session")
def serve_url(
    serve_http: str,
    redis_client: redis.Redis,
    reddit_server: RedditTestServer,
    app_pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
) -> Iterator[str]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no model at {MODEL_DIR}")
    jsonl = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    if not jsonl.is_file():
        pytest.skip(f"no post corpus at {jsonl} (../shared absent)")
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings

    settings = Settings(
        stores={
            "redis_url": TEST_REDIS_URL,
            "postgres_url": app_pg_url,
            "embedded": False,
            "data_dir": tmp_path_factory.mktemp("app-data"),  # the history journal: this app's own
        },
        background=True,
        warmer={"per_pass": 0},  # the warmer is tested on its own
        reddit={
            "public_url": reddit_server.url,
            "retries": 0,
            "timeout_s": 5,
            "contact": "/u/emotion-monitor-tests",
            # The shared request budget is tested on its own (test_request_budget.py); here it
            # must not ration the test server.
            "public_per_min": 6000,
            "burst": 1000,
        },
        # The monitor's passes are forced by the tests (run_once(force=True)).
        monitor={"interval_s": 3600, "alert_webhook_url": webhook.url, "alert_webhook_attempts": 3},
    )
    args = AppArgs(
        model=ModelSettings(dir=MODEL_DIR, max_length=128),
        sources=SourcesSettings(default_source="jsonl", jsonl_path=jsonl),
        classifier_max_replicas=1,
        classifier_num_cpus=1,
        log_level="DEBUG",  # test_metrics follows a request id through every deployment
    )
    serve.run(make_app(args, settings), name="emotion-monitor", route_prefix="/")
    yield serve_http
    from deployments.background import stop_background

    serve.delete("emotion-monitor")
    stop_background("emotion-monitor")  # detached: they outlive the app


@pytest.fixture()
def clean_cache(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.flushdb()
    yield redis_client
    redis_client.flushdb()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_ROOT


TEST_PG_ADMIN_URL = os.environ.get("EMOTION_MONITOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _fresh_database(prefix: str) -> Iterator[str]:
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        service_unavailable(f"no PostgreSQL at {TEST_PG_ADMIN_URL}: {exc} (run scripts/services.sh)")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = TEST_PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def app_pg_url() -> Iterator[str]:
    """The database the served app's sync actor writes to."""
    yield from _fresh_database("em_app")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database for history tests that drive the sync directly."""
    from serve_app.stores.history_sql import migrate

    for url in _fresh_database("em_hist"):
        migrate(url)
        yield url


@pytest.fixture()
def clean_history(pg_url: str) -> Iterator[tuple[str, redis.Redis]]:
    """Empty history tables and a flushed Redis DB 13, before and after each test."""
    import psycopg

    r = redis.Redis.from_url(TEST_REDIS_URL.rsplit("/", 1)[0] + "/13")
    try:
        r.ping()
    except redis.RedisError as exc:
        service_unavailable(f"no Redis: {exc}")

    def wipe() -> None:
        r.flushdb()
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute("TRUNCATE queries, posts, predictions, query_aggregates CASCADE")

    wipe()
    yield pg_url, r
    wipe()


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class CpuLoad:
    """Keeps every core busy between start() and stop()."""

    def __init__(self) -> None:
        self.stop_event = mp.Event()
        self.procs: list[Any] = []

    def start(self) -> None:
        self.stop_event.clear()
        self.procs = [
            mp.Process(target=_burn, args=(self.stop_event,), daemon=True) for _ in range(os.cpu_count() or 1)
        ]
        for p in self.procs:
            p.start()
        time.sleep(1)

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.procs:
            p.join(10)
        self.procs = []


@pytest.fixture()
def cpu_load() -> Iterator[CpuLoad]:
    load = CpuLoad()
    yield load
    load.stop()
