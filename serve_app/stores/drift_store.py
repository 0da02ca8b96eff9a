"""Where the drift watch's data lives.

Redis: per source and task, a capped list of the last N scored posts, each one float16 row
(the head's calibrated probabilities, then the pooled embedding when the graph has one).
The Classifier appends through `DriftTap`: a buffer flushed by a daemon thread, so the
response path pays a float16 conversion and a deque append, never a network round trip.
PostgreSQL: every check (`drift_checks`, migration 0012) and drift alerts in the `alerts`
table of spike alerts, so the monitor's webhook delivery carries them too.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import redis

from serve_app.config.settings import DriftSettings
from serve_app.monitoring.drift import DriftCheck, TestResult
from serve_app.monitoring.trends import Spike

log = logging.getLogger("emotion_monitor.drift")

PREFIX = "em:drift:"


def window_key(source: str, task: str) -> str:
    return f"{PREFIX}{source}:{task}"


def encode_rows(probs: np.ndarray, embeddings: np.ndarray | None) -> list[bytes]:
    rows = probs if embeddings is None else np.hstack([probs, embeddings])
    return [r.tobytes() for r in rows.astype(np.float16)]


def decode_rows(raw: list[bytes], n_labels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, embeddings or None) of a window, newest first."""
    if not raw:
        return np.zeros((0, n_labels), np.float32), None
    width = min(len(r) for r in raw) // 2
    rows = np.vstack([np.frombuffer(r, np.float16, count=width) for r in raw]).astype(np.float32)
    return rows[:, :n_labels], (rows[:, n_labels:] if width > n_labels else None)


@dataclass(frozen=True)
class TapConfig:
    """The Classifier's side of the drift watch."""

    redis_url: str  # resolved at run time
    drift: DriftSettings = field(default_factory=DriftSettings)  # `window`: posts kept per source and task
    flush_s: float = 1.0


class DriftTap:
    """Fire-and-forget recording of scored posts: `offer` queues, a daemon thread writes."""

    def __init__(self, cfg: TapConfig) -> None:
        self.cfg = cfg
        self._queue: deque[tuple[str, list[bytes]]] = deque(maxlen=10_000)  # a down Redis drops, never grows
        self._wake = threading.Event()
        self._client = redis.Redis.from_url(cfg.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.written = 0
        threading.Thread(target=self._loop, name="drift-tap", daemon=True).start()

    def offer(self, source: str, task: str, probs: np.ndarray, embeddings: np.ndarray | None) -> None:
        if len(probs):
            self._queue.append((window_key(source, task), encode_rows(probs, embeddings)))

    def offer_batch(
        self,
        calls: list[tuple[str, tuple[str, ...]]],
        sizes: list[int],
        probs: dict[str, np.ndarray],
        embeddings: np.ndarray | None,
    ) -> None:
        """One model batch's calls, each (source, tasks) with `sizes[i]` texts, in order;
        calls without a source are skipped. Never raises: the answer must not depend on it."""
        try:
            start = 0
            for (source, tasks), n in zip(calls, sizes, strict=True):
                if source:
                    part = None if embeddings is None else embeddings[start : start + n]
                    for task in tasks:
                        if task in probs:
                            self.offer(source, task, probs[task][start : start + n], part)
                start += n
        except Exception as exc:  # pragma: no cover - defensive
            log.warning("drift tap: %r", exc)

    def flush(self) -> int:
        """Write what is queued (one pipeline); rows written."""
        batch: dict[str, list[bytes]] = {}
        while self._queue:
            key, rows = self._queue.popleft()
            batch.setdefault(key, []).extend(rows)
        if not batch:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for key, rows in batch.items():
            rows = rows[-self.cfg.drift.window :]
            pipe.lpush(key, *rows)
            pipe.ltrim(key, 0, self.cfg.drift.window - 1)
        pipe.execute()
        n = sum(min(len(r), self.cfg.drift.window) for r in batch.values())
        self.written += n
        return n

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.cfg.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except (redis.RedisError, OSError) as exc:  # drift data is best effort
                log.debug("drift tap not written: %r", exc)


def window_sources(client: redis.Redis) -> list[tuple[str, str]]:
    """(source, task) of every window in Redis."""
    out = []
    for key in client.scan_iter(match=f"{PREFIX}*", count=100):
        name = key.decode() if isinstance(key, bytes) else str(key)
        source, _, task = name[len(PREFIX) :].rpartition(":")
        out.append((source, task))
    return sorted(out)


def read_window(
    client: redis.Redis, source: str, task: str, n: int, n_labels: int
) -> tuple[np.ndarray, np.ndarray | None]:
    raw: list[bytes] = client.lrange(window_key(source, task), 0, n - 1)  # type: ignore[assignment]
    return decode_rows(raw, n_labels)


_CHECK_COLS = (
    "checked_at, source, task, model_version, posts, reference, label_tvd, label_p, confidence_ks,"
    " confidence_p, embedding_mmd2, embedding_p, estimated_accuracy, reference_accuracy, drifted,"
    " reasons, cpu_s"
)


def _stat(check: DriftCheck, name: str) -> tuple[float | None, float | None]:
    t = check.test(name)
    return (None, None) if t is None else (t.statistic, t.p_value)


def save_check(dsn: str, check: DriftCheck) -> None:
    values = (
        dt.datetime.fromtimestamp(check.checked_at or time.time(), dt.UTC), check.source, check.task,
        check.model_version, check.posts, check.reference, *_stat(check, "label_mix"),
        *_stat(check, "confidence"), *_stat(check, "embedding"), check.estimated_accuracy,
        check.reference_accuracy, check.drifted, check.reasons, check.cpu_s,
    )  # fmt: skip
    with psycopg.connect(dsn, connect_timeout=5) as c:
        c.execute(f"INSERT INTO drift_checks ({_CHECK_COLS}) VALUES ({', '.join(['%s'] * 17)})", values)


def latest_checks(dsn: str, source: str | None = None, task: str | None = None) -> list[DriftCheck]:
    """The newest check of every (source, task), or of the one asked for."""
    with psycopg.connect(dsn, connect_timeout=5) as c:
        rows = c.execute(
            f"SELECT DISTINCT ON (source, task) {_CHECK_COLS} FROM drift_checks"
            " WHERE (%s::text IS NULL OR source = %s) AND (%s::text IS NULL OR task = %s)"
            " ORDER BY source, task, checked_at DESC",
            (source, source, task, task),
        ).fetchall()
    return [_check(r) for r in rows]


def _check(r: Sequence[Any]) -> DriftCheck:
    reasons = set(r[15] or ())
    stats = (("label_mix", r[6], r[7]), ("confidence", r[8], r[9]), ("embedding", r[10], r[11]))
    tests = tuple(
        TestResult(name, float(stat), float(p), name in reasons)
        for name, stat, p in stats
        if stat is not None and p is not None
    )
    return DriftCheck(
        r[1], r[2], r[3], r[4], r[5], tests, estimated_accuracy=r[12], reference_accuracy=r[13],
        cpu_s=float(r[16]), checked_at=r[0].timestamp(),
    )  # fmt: skip


def drift_keyword(source: str) -> str:
    """The `keyword` a drift alert is filed under in the alerts table (spikes use keywords)."""
    return f"drift:{source}"


def drift_alert(check: DriftCheck, bucket_s: int) -> Spike:
    """A drift check as an alert row: `label` names the failed tests, `share` the largest
    effect (percent), `z` -log10 of the smallest p-value; one per source, task and bucket."""
    failed = [t for t in check.tests if t.significant]
    now = check.checked_at or time.time()
    return Spike(
        keyword=drift_keyword(check.source),
        task=check.task,
        label="+".join(t.name for t in failed) or "drift",
        bucket_start=float(int(now // bucket_s) * bucket_s),
        bucket_s=bucket_s,
        share=round(100 * max((t.statistic for t in failed), default=0.0), 2),
        baseline=round(100 * (check.reference_accuracy or 0.0), 2),
        z=round(-np.log10(max(min((t.p_value for t in failed), default=1.0), 1e-300)), 1),
        posts=check.posts,
        baseline_posts=0,
    )
