"""API key on the API routes (/healthz and the OpenAPI docs stay open), per-client rate
limit on /analyze, and no configured secret in any log of the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import DATA_ROOT, MODEL_DIR, TEST_REDIS_URL
from tests.reddit_server import CLIENT_ID, CLIENT_SECRET, RedditTestServer

pytestmark = pytest.mark.integration
API_KEY = "test-api-key-5a8f0e1c9d"
# Trust auth ignores the password, so the history really connects with a URL that carries one.
PG_PASSWORD = "pg-pass-3e9b7d41"
PG_URL = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:5432/test"
AWS_KEY_ID, AWS_SECRET = "AKIATESTKEYID4F2A9C", "aws-secret-7d0c5b2e91f4"


@pytest.fixture(scope="module")
def secured_url(serve_url: str, reddit_server: RedditTestServer) -> Iterator[str]:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings

    settings = Settings(
        stores={"redis_url": TEST_REDIS_URL, "postgres_url": PG_URL, "embedded": False},
        s3={"access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET},
        background=False,
        http={"api_key": API_KEY, "analyze_rate_per_min": 6, "analyze_burst": 2},
        reddit={
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "oauth_url": reddit_server.url,
            "www_url": reddit_server.url,
        },
    )
    args = AppArgs(
        model=ModelSettings(dir=MODEL_DIR),
        sources=SourcesSettings(
            default_source="reddit", jsonl_path=DATA_ROOT / "reddit_sample" / "posts.jsonl"
        ),
        classifier_max_replicas=1,
        classifier_num_cpus=0.5,
    )
    serve.run(make_app(args, settings, app_name="secured"), name="secured", route_prefix="/secured")
    yield f"{serve_url}/secured"
    serve.delete("secured")


def test_api_key_guards_every_route_but_healthz(secured_url: str) -> None:
    assert httpx.get(f"{secured_url}/healthz", timeout=30).status_code == 200
    r = httpx.get(f"{secured_url}/labels", timeout=30)
    assert r.status_code == 401 and r.json()["detail"] == "missing X-API-Key header"
    assert r.headers["www-authenticate"] == "ApiKey"
    r = httpx.post(f"{secured_url}/predict", json={"text": "hi"}, headers={"X-API-Key": "wrong"}, timeout=30)
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = httpx.post(f"{secured_url}/predict", json={"text": "hi"}, headers={"X-API-Key": API_KEY}, timeout=30)
    assert r.status_code == 200
    r = httpx.get(f"{secured_url}/sync/status", headers={"X-API-Key": "x" * len(API_KEY)}, timeout=30)
    assert r.status_code == 401
    # The key is checked before the body: no key, no validation details either.
    r = httpx.post(f"{secured_url}/predict", json={"texts": [], "bogus": 1}, timeout=30)
    assert r.status_code == 401 and r.json()["detail"] == "missing X-API-Key header"
    r = httpx.post(f"{secured_url}/analyze", json={"limit": "abc"}, headers={"X-API-Key": "no"}, timeout=30)
    assert r.status_code == 401
    # With the key, the same body gets its 422.
    r = httpx.post(
        f"{secured_url}/analyze", json={"limit": "abc"}, headers={"X-API-Key": API_KEY}, timeout=30
    )
    assert r.status_code == 422


def test_analyze_is_rate_limited_per_client(secured_url: str, clean_cache: redis.Redis) -> None:
    headers = {"X-API-Key": API_KEY}
    codes = []
    for i in range(3):  # burst of 2, then 6 a minute: the third waits ~10 s
        r = httpx.post(
            f"{secured_url}/analyze", json={"keyword": "python", "limit": 5 + i}, headers=headers, timeout=120
        )
        codes.append(r.status_code)
    assert codes == [200, 200, 429], codes
    assert 1 <= int(r.headers["retry-after"]) <= 10
    assert "retry in" in r.json()["detail"]


def test_no_configured_secret_appears_in_any_log(secured_url: str, ray_session: str) -> None:
    import ray

    # Exercise the praw path (it uses the Reddit secret) and an auth failure first.
    httpx.post(f"{secured_url}/predict", json={"text": "x"}, headers={"X-API-Key": "nope"}, timeout=30)
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    secrets = [API_KEY, CLIENT_SECRET, PG_PASSWORD, AWS_SECRET]
    hits = []
    for f in logs.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            hits += [f"{f.name}: {s}" for s in secrets if s.encode() in data]
    assert hits == []
    assert logs.is_dir() and any(logs.iterdir())  # the search looked somewhere real
