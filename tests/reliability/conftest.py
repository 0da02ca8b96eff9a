"""The app under fault: its own Serve application on private Redis and PostgreSQL servers.

Every test here injects a fault (a killed replica, a crashed Redis or PostgreSQL, a failing
source, more load than the machine can take) while a bounded load runs, and adds a row to
the report written at the end of the session (runs/reliability/report.md, and the path in
$EMOTION_MONITOR_RELIABILITY_REPORT if set: that is how docs/reliability.md is made).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import DATA_ROOT, MODEL_DIR, ROOT, service_unavailable
from tests.leftovers import OWN_DIRS
from tests.reddit_server import RedditTestServer, make_post
from tests.reliability.services import PrivatePostgres, PrivateRedis, ServiceUnavailableForTest

APP = "reliability"
PREFIX = "/rel"

pytestmark = pytest.mark.reliability


@dataclass
class Row:
    fault: str
    load: str
    requests: int
    success_rate: float | None
    lost: int | None
    recovery_s: float | None
    notes: str
    test: str = ""  # the pytest node id that added the row


# Outcome of each test that ran, by node id: a row is only as good as the checks after it,
# so the report prints each row's test result beside the numbers it recorded.
OUTCOMES: dict[str, str] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.failed:
        OUTCOMES[item.nodeid] = "FAILED"
    elif rep.when == "call":
        OUTCOMES.setdefault(item.nodeid, "passed")


def current_test() -> str:
    # "tests/x.py::test_y (call)" while a test runs.
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(
        self,
        fault: str,
        load: str,
        requests: int,
        success_rate: float | None,
        lost: int | None,
        recovery_s: float | None,
        notes: str,
    ) -> None:
        self.rows.append(Row(fault, load, requests, success_rate, lost, recovery_s, notes, current_test()))

    def markdown(self) -> str:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
             if ln.startswith("model name")),
            platform.processor(),
        ) if Path("/proc/cpuinfo").is_file() else platform.processor()  # fmt: skip
        lines = [
            "# Reliability report",
            "",
            f"Produced by `pytest -m reliability tests/reliability` on {dt.date.today().isoformat()}, "
            f"{cpu}, {psutil.cpu_count()} cores. Each row is one test: the fault injected, the load",
            "held while it happened, the share of requests answered 200, analysis records lost",
            "between the API and PostgreSQL (must be 0), the time to recover, and whether every",
            "check of that test passed (a row is written before its checks run; FAILED means one",
            "of them did not hold).",
            "",
            "| fault / input | load | requests | success | records lost | recovery | checks | notes |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            rate = "-" if r.success_rate is None else f"{100 * r.success_rate:.1f} %"
            lost = "-" if r.lost is None else str(r.lost)
            rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
            checks = OUTCOMES.get(r.test, "not finished")
            lines.append(
                f"| {r.fault} | {r.load} | {r.requests} | {rate} | {lost} | {rec} | {checks} | {r.notes} |"
            )
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    rep = Report()
    yield rep
    if not rep.rows:
        return
    text = rep.markdown()
    out = ROOT / "runs" / "reliability" / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    extra = os.environ.get("EMOTION_MONITOR_RELIABILITY_REPORT")
    if extra:
        Path(extra).write_text(text)


@pytest.fixture(scope="session")
def private_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="em-rel-") as d:
        OWN_DIRS.append(d)
        yield Path(d)


@pytest.fixture(scope="session")
def private_redis(private_dir: Path) -> Iterator[PrivateRedis]:
    try:
        srv = PrivateRedis(private_dir)
    except ServiceUnavailableForTest as exc:
        service_unavailable(str(exc))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="session")
def private_pg(private_dir: Path) -> Iterator[PrivatePostgres]:
    try:
        srv = PrivatePostgres(private_dir)
    except ServiceUnavailableForTest as exc:
        service_unavailable(str(exc))
    srv.start()
    yield srv
    with contextlib.suppress(Exception):  # already stopped by a test that failed half-way
        srv.stop("fast")


@pytest.fixture(scope="session")
def flaky_reddit() -> Iterator[RedditTestServer]:
    posts = [make_post(i, f"our python release {i} made me happy", "so glad") for i in range(100)]
    with RedditTestServer(posts) as srv:
        yield srv


def deploy(settings_kw: dict[str, Any], **args_kw: Any) -> None:
    from ray import serve

    from deployments.app import AppArgs, make_app
    from serve_app.config.settings import ModelSettings, Settings, SourcesSettings

    settings = Settings(
        background=True,
        warmer={"per_pass": 0},
        **{**settings_kw, "stores": {"embedded": False, **settings_kw.get("stores", {})}},
    )
    args = AppArgs(
        model=ModelSettings(dir=MODEL_DIR, ort_threads=1, max_length=64),
        sources=SourcesSettings(
            default_source="jsonl", jsonl_path=DATA_ROOT / "reddit_sample" / "posts.jsonl"
        ),
        classifier_min_replicas=2,
        classifier_max_replicas=2,
        classifier_num_cpus=0.5,
        **args_kw,
    )
    serve.run(make_app(args, settings, app_name=APP), name=APP, route_prefix=PREFIX)


def undeploy() -> None:
    from ray import serve

    from deployments.background import stop_background

    serve.delete(APP)
    stop_background(APP)


@pytest.fixture(scope="session")
def rel_settings(
    private_redis: PrivateRedis,
    private_pg: PrivatePostgres,
    flaky_reddit: RedditTestServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    return {
        "stores": {
            # The ingress's history journal lives here: not shared with other suites' apps.
            "data_dir": tmp_path_factory.mktemp("rel-data"),
            "redis_url": private_redis.url,
            "postgres_url": private_pg.url,
        },
        # The background loop must not race the tests' forced passes for the same records;
        # a sync pass under test is always `sync_now`, which ignores the CPU gate.
        "sync": {"cpu_threshold": 0.1},
        "reddit": {
            "public_url": flaky_reddit.url,
            "retries": 2,
            "timeout_s": 1.0,
            "contact": "/u/emotion-monitor-tests",
            "public_per_min": 6000,
            "burst": 1000,
        },
    }


@pytest.fixture(scope="session")
def rel_url(serve_http: str, rel_settings: dict[str, Any]) -> Iterator[str]:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no model at {MODEL_DIR}")
    if not (DATA_ROOT / "reddit_sample" / "posts.jsonl").is_file():
        pytest.skip("no post corpus (../shared absent)")
    deploy(rel_settings, max_inflight=24, fetch_deadline_s=6)
    yield serve_http + PREFIX
    undeploy()
