"""Our Prometheus metrics, exported through Ray's metrics agent beside Ray Serve's own.

Every process that records one creates the objects lazily (Ray metrics need a connected
worker; importing this module does nothing). Names appear in Prometheus with Ray's `ray_`
prefix, e.g. `ray_emotion_monitor_predictions_total`; `cluster/grafana/` queries them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec

import numpy as np

if TYPE_CHECKING:
    from serve_app.monitoring.drift import DriftCheck

P = ParamSpec("P")

log = logging.getLogger("emotion_monitor.metrics")

CONFIDENCE_BUCKETS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]

_lock = threading.Lock()
_made: dict[str, Any] = {}

# name -> (kind, description, tag keys, histogram boundaries)
SPECS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "emotion_monitor_predictions_total": (
        "counter",
        "Texts classified, by task and label",
        ("task", "label"),
        None,
    ),
    "emotion_monitor_confidence": (
        "histogram",
        "Confidence of the predicted label",
        ("task",),
        CONFIDENCE_BUCKETS,
    ),
    "emotion_monitor_cache_requests_total": ("counter", "/analyze cache lookups", ("result",), None),
    "emotion_monitor_fetch_seconds": (
        "histogram",
        "Post fetch latency by source",
        ("source",),
        SECONDS_BUCKETS,
    ),
    "emotion_monitor_posts_total": (
        "counter",
        "Posts fetched, by language and scored/excluded",
        ("lang", "scored"),
        None,
    ),
    "emotion_monitor_shed_total": ("counter", "Requests answered 503 at the admission limit", (), None),
    "emotion_monitor_sync_backlog": ("gauge", "Analyses in Redis not yet in PostgreSQL", (), None),
    "emotion_monitor_synced_records_total": ("counter", "Analyses moved to PostgreSQL", (), None),
    "emotion_monitor_warmer_refreshes_total": ("counter", "Cache entries refreshed by the warmer", (), None),
    "emotion_monitor_reddit_requests_total": (
        "counter",
        "HTTP requests sent to Reddit, by access (oauth/public) and status",
        ("access", "status"),
        None,
    ),
    "emotion_monitor_reddit_budget_wait_seconds": (
        "histogram",
        "Time spent waiting for a token of the shared Reddit request budget",
        ("priority",),
        SECONDS_BUCKETS,
    ),
    "emotion_monitor_reddit_budget_refused_total": (
        "counter",
        "Reddit requests not sent: no token before the caller's deadline",
        ("priority",),
        None,
    ),
    "emotion_monitor_post_scores_total": (
        "counter",
        "Posts an analysis needed scores for: run through the models, or reused from the score cache",
        ("origin",),
        None,
    ),
    "emotion_monitor_alerts_total": (
        "counter",
        "Spike alerts raised, by task and label",
        ("task", "label"),
        None,
    ),
    "emotion_monitor_alert_deliveries_total": (
        "counter",
        "Webhook delivery attempts of alerts, by outcome",
        ("outcome",),
        None,
    ),
    "emotion_monitor_embedded_restarts_total": (
        "counter",
        "Embedded Redis / PostgreSQL servers found dead and restarted by the supervisor",
        ("server",),
        None,
    ),
    "emotion_monitor_drift_statistic": (
        "gauge",
        "Latest drift check: each test's effect size (label_mix TVD, confidence KS D, embedding MMD^2)",
        ("source", "task", "test"),
        None,
    ),
    "emotion_monitor_drift_p_value": (
        "gauge",
        "Latest drift check: each test's p-value",
        ("source", "task", "test"),
        None,
    ),
    "emotion_monitor_drift_detected": (
        "gauge",
        "Latest drift check found drift (1) or not (0)",
        ("source", "task"),
        None,
    ),
    "emotion_monitor_estimated_accuracy": (
        "gauge",
        "Accuracy estimated without labels: mean calibrated max probability over the window",
        ("source", "task"),
        None,
    ),
    "emotion_monitor_posts_excluded_total": (
        "counter",
        "Fetched posts left out by post hygiene, by reason",
        ("reason",),
        None,
    ),
    "emotion_monitor_shadow_posts_total": (
        "counter",
        "Posts sampled for the candidate version (serve_app/lifecycle/shadow.py): queued, dropped (queue "
        "full), failed, or stored pairs",
        ("outcome",),
        None,
    ),
}


def _metric(name: str) -> Any:
    with _lock:
        if name not in _made:
            # Serve's wrappers add deployment, replica and application tags inside a replica
            # (and none in the background actors), so panels can split by replica.
            from ray.serve import metrics

            kind, desc, tag_keys, buckets = SPECS[name]
            tags: Any = tag_keys  # Ray annotates tag_keys as a 1-tuple; any tuple of str works
            if kind == "counter":
                _made[name] = metrics.Counter(name, description=desc, tag_keys=tags)
            elif kind == "gauge":
                _made[name] = metrics.Gauge(name, description=desc, tag_keys=tags)
            else:
                _made[name] = metrics.Histogram(
                    name, description=desc, boundaries=buckets or [], tag_keys=tags
                )
        return _made[name]


def _safe(fn: Callable[P, None]) -> Callable[P, None]:
    """Metrics must never fail a request: outside Ray (unit tests, the CLI) they are no-ops."""

    @functools.wraps(fn)  # the helpers keep their names, docstrings and signatures for callers
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # pragma: no cover - depends on the Ray runtime
            log.debug("metric not recorded: %r", exc)

    return wrapper


@_safe
def record_probabilities(task: str, labels: Sequence[str], probs: np.ndarray) -> None:
    """One batch's predictions: counts per label and each text's confidence.

    Called once per model batch, not per request: each Ray metric call costs tens of
    microseconds, paid at every one of hundreds of /predict calls per second.
    """
    if not len(probs):
        return
    hist = _metric("emotion_monitor_confidence")
    tags = {"task": task}
    for confidence in probs.max(axis=1).tolist():
        hist.observe(confidence, tags=tags)
    counter = _metric("emotion_monitor_predictions_total")
    counts = np.bincount(probs.argmax(axis=1), minlength=len(labels)).tolist()
    for label, n in zip(labels, counts, strict=True):
        if n:
            counter.inc(n, tags={"task": task, "label": label})


@_safe
def record_cache(hit: bool) -> None:
    _metric("emotion_monitor_cache_requests_total").inc(1, tags={"result": "hit" if hit else "miss"})


@_safe
def record_fetch(source: str, seconds: float) -> None:
    _metric("emotion_monitor_fetch_seconds").observe(seconds, tags={"source": source})


@_safe
def record_posts(langs: Sequence[str], scored: Sequence[bool]) -> None:
    counts: dict[tuple[str, str], int] = {}
    for lang, ok in zip(langs, scored, strict=True):
        key = (lang, "yes" if ok else "no")
        counts[key] = counts.get(key, 0) + 1
    for (lang, flag), n in counts.items():
        _metric("emotion_monitor_posts_total").inc(n, tags={"lang": lang, "scored": flag})


@_safe
def record_shed() -> None:
    _metric("emotion_monitor_shed_total").inc(1)


@_safe
def record_sync(backlog: int, synced: int) -> None:
    _metric("emotion_monitor_sync_backlog").set(backlog)
    if synced:
        _metric("emotion_monitor_synced_records_total").inc(synced)


@_safe
def record_warmer(refreshed: int) -> None:
    if refreshed:
        _metric("emotion_monitor_warmer_refreshes_total").inc(refreshed)


@_safe
def record_reddit_request(access: str, status: int | str) -> None:
    """One request sent to Reddit; `status` is the HTTP status or "error" (no response)."""
    _metric("emotion_monitor_reddit_requests_total").inc(1, tags={"access": access, "status": str(status)})


@_safe
def record_budget_wait(priority: str, seconds: float) -> None:
    _metric("emotion_monitor_reddit_budget_wait_seconds").observe(seconds, tags={"priority": priority})


@_safe
def record_budget_refused(priority: str) -> None:
    _metric("emotion_monitor_reddit_budget_refused_total").inc(1, tags={"priority": priority})


@_safe
def record_excluded(counts: dict[str, int]) -> None:
    for reason, n in counts.items():
        if n:
            _metric("emotion_monitor_posts_excluded_total").inc(n, tags={"reason": reason})


@_safe
def record_embedded_restart(server: str) -> None:
    _metric("emotion_monitor_embedded_restarts_total").inc(1, tags={"server": server})


@_safe
def record_scores(computed: int, reused: int) -> None:
    if computed:
        _metric("emotion_monitor_post_scores_total").inc(computed, tags={"origin": "model"})
    if reused:
        _metric("emotion_monitor_post_scores_total").inc(reused, tags={"origin": "cache"})


@_safe
def record_alert(task: str, label: str) -> None:
    _metric("emotion_monitor_alerts_total").inc(1, tags={"task": task, "label": label})


@_safe
def record_alert_delivery(outcome: str) -> None:
    _metric("emotion_monitor_alert_deliveries_total").inc(1, tags={"outcome": outcome})


@_safe
def record_drift(check: DriftCheck) -> None:
    """One drift check (serve_app.monitoring.drift.DriftCheck): its gauges, per source and task."""
    tags = {"source": check.source, "task": check.task}
    for t in check.tests:
        _metric("emotion_monitor_drift_statistic").set(t.statistic, tags={**tags, "test": t.name})
        _metric("emotion_monitor_drift_p_value").set(t.p_value, tags={**tags, "test": t.name})
    _metric("emotion_monitor_drift_detected").set(int(check.drifted), tags=tags)
    if check.estimated_accuracy is not None:
        _metric("emotion_monitor_estimated_accuracy").set(check.estimated_accuracy, tags=tags)


@_safe
def record_shadow(outcome: str, n: int) -> None:
    _metric("emotion_monitor_shadow_posts_total").inc(n, tags={"outcome": outcome})
