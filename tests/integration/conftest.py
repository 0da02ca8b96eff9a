"""Session-scoped real infrastructure: a local Ray with Serve, Redis, the Reddit test server."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import DATA_ROOT, MODEL_DIR
from tests.reddit_server import RedditTestServer, make_post

TEST_REDIS_URL = os.environ.get("EMOTION_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {TEST_REDIS_URL}: {exc} (run scripts/services.sh)")
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def reddit_server() -> Iterator[RedditTestServer]:
    posts = [make_post(i, f"I love my new python project {i}", "so happy") for i in range(60)]
    with RedditTestServer(posts) as srv:
        yield srv


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A Ray instance of our own (own temp dir and ports); only it is stopped afterwards."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    tmp = tempfile.mkdtemp(prefix="em-ray-")
    dash = free_port()
    ctx = ray.init(
        num_cpus=4,  # logical CPUs: replicas reserve fractions, the 2 cores are shared
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dash,
        _temp_dir=tmp,
        log_to_driver=False,
        logging_level="warning",
        runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}},
    )
    yield f"http://127.0.0.1:{dash}" if ctx.dashboard_url else ""
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_url(ray_session: str, redis_client: redis.Redis, reddit_server: RedditTestServer) -> Iterator[str]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no model at {MODEL_DIR}")
    jsonl = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    if not jsonl.is_file():
        pytest.skip(f"no post corpus at {jsonl} (../shared absent)")
    from ray import serve

    from serve_app.app import AppArgs, build_app
    from serve_app.settings import Settings

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = Settings(
        redis_url=TEST_REDIS_URL,
        reddit_public_url=reddit_server.url,
        fetch_retries=0,
        fetch_timeout_s=5,
    )
    args = AppArgs(
        model_dir=str(MODEL_DIR),
        default_source="jsonl",
        jsonl_path=str(jsonl),
        classifier_max_replicas=1,
        classifier_num_cpus=1,
        max_length=128,
    )
    serve.run(build_app(args, settings), name="emotion-monitor", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture()
def clean_cache(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.flushdb()
    yield redis_client
    redis_client.flushdb()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_ROOT
