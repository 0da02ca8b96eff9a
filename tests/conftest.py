"""Shared fixtures: where the shared data and the committed model are, and skips when not."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.leftovers import OWN_DIRS, describe, wait_for_none

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EMOTION_MONITOR_MODEL__DATA_ROOT", ROOT.parent / "shared" / "data"))
MODEL_DIR = ROOT / "models" / "multitask"


def service_unavailable(reason: str) -> NoReturn:
    """Skip a test whose local service (Redis, PostgreSQL, Chromium) could not be had; under
    CI=true fail it instead, so a CI run cannot pass by skipping the tiers that need them."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a required service is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


_RUN_STARTED = time.time()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left a process behind (checked after every fixture is torn down)."""
    if os.environ.get("EMOTION_MONITOR_ALLOW_LEFTOVERS") == "1" or hasattr(session.config, "workerinput"):
        return
    basetemp = str(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
    left = wait_for_none(_RUN_STARTED, [basetemp])
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = f"tests left {len(left)} process(es) running:\n{describe(left)}"
        if reporter is not None:
            reporter.write_line(msg, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "emotion" / "test.jsonl").is_file():
        pytest.skip(f"shared data not found at {DATA_ROOT} (a fresh clone has no ../shared)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.onnx").is_file():
        pytest.skip(f"no committed model at {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """A Ray instance of our own (own temp dir and ports); only it is stopped afterwards."""
    import ray

    from tooling.net import free_port

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    tmp = tempfile.mkdtemp(prefix="em-ray-")
    OWN_DIRS.append(tmp)
    dash = free_port()
    ctx = ray.init(
        num_cpus=4,  # logical CPUs: replicas reserve fractions, the 2 cores are shared
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dash,
        _temp_dir=tmp,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}},
    )
    yield f"http://127.0.0.1:{dash}" if ctx.dashboard_url else ""
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_http(ray_session: str) -> Iterator[str]:
    """Serve's HTTP proxy on a free loopback port; apps are deployed on it by route prefix."""
    from ray import serve

    from tooling.net import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def wait_for(pred: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    """Poll `pred` until it is truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()
