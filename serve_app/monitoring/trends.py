"""Trends over time and spike alerts, as pure functions over (bucket, task, label, count) rows.

A trend is bucketed by each post's own creation time, not by when it was analysed, and a
post seen by several analyses counts once with its latest label (`serve_app.stores.watchlists`
reads the rows from PostgreSQL). Each share has a 95 % Wilson score interval.

A spike is a bucket whose share of a watched label (anger, negative) is above the
keyword's trailing baseline by more than chance explains: a one-sided two-proportion
z-test, with a minimum number of posts in both the bucket and the baseline.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from serve_app.config.settings import MonitorSettings
from serve_app.counting.polarity import net_of_counts
from serve_app.domain.records import EmergingTermRow, NetSentimentRow
from serve_app.domain.tasks import TASKS

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion k/n, in % (0-100)."""
    if n <= 0:
        return 0.0, 0.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(100 * max(0.0, centre - half), 2), round(100 * min(1.0, centre + half), 2)


def two_proportion_z(k1: int, n1: int, k0: int, n0: int) -> float:
    """z for "p1 > p0" with the pooled standard error (0 when undefined)."""
    if n1 <= 0 or n0 <= 0:
        return 0.0
    pooled = (k1 + k0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    return 0.0 if se == 0 else (k1 / n1 - k0 / n0) / se


@dataclass(frozen=True)
class LabelShare:
    label: str
    count: int
    pct: float
    pct_low: float
    pct_high: float


@dataclass(frozen=True)
class Bucket:
    start: float  # unix seconds
    posts: dict[str, int]  # task -> posts with a label for it
    shares: dict[str, list[LabelShare]]  # task -> a share per label, registry order
    # (positive - negative) / (positive + negative) of the sentiment task's posts, Wilson 95 %.
    net_sentiment: NetSentimentRow | None = None


def buckets_from_rows(rows: Iterable[tuple[float, str, str, int]]) -> list[Bucket]:
    """(bucket start, task, label, count) rows -> buckets, oldest first, every registry label."""
    counts: dict[float, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for start, task, label, n in rows:
        counts[float(start)][task][label] = counts[float(start)][task].get(label, 0) + int(n)
    out = []
    for start in sorted(counts):
        posts: dict[str, int] = {}
        shares: dict[str, list[LabelShare]] = {}
        for task, by_label in counts[start].items():
            labels = TASKS[task].labels if task in TASKS else tuple(sorted(by_label))
            n = sum(by_label.values())
            posts[task] = n
            shares[task] = [
                LabelShare(
                    lab,
                    by_label.get(lab, 0),
                    round(100 * by_label.get(lab, 0) / n, 2),
                    *wilson(by_label.get(lab, 0), n),
                )
                for lab in labels
            ]
        sentiment = counts[start].get("sentiment")
        out.append(Bucket(start, posts, shares, net_of_counts(sentiment) if sentiment else None))
    return out


@dataclass(frozen=True)
class SpikeRule:
    task: str
    label: str
    z: float = 3.0  # one-sided: p < 0.0013 that chance alone gives this rise
    min_posts: int = 20  # in the bucket, and in the baseline
    baseline_buckets: int = 24  # trailing buckets pooled into the baseline


def spike_rules(m: MonitorSettings | None = None) -> tuple[SpikeRule, ...]:
    """A rule per task that declares an alert label (the task registry), with the monitor
    settings' z, minimum posts and baseline."""
    m = m or MonitorSettings()
    return tuple(
        SpikeRule(t.name, t.alert_label, m.alert_z, m.alert_min_posts, m.alert_baseline_buckets)
        for t in TASKS.values()
        if t.alert_label
    )


@dataclass(frozen=True)
class Spike:
    keyword: str
    task: str
    label: str
    bucket_start: float
    bucket_s: int
    share: float
    baseline: float
    z: float
    posts: int
    baseline_posts: int
    alert_id: str = field(default="")
    # What the spike is about: terms that rose in the bucket against the baseline (the monitor
    # fills them in from the posts' texts; serve_app.explain.drivers.emerging_terms).
    emerging_terms: tuple[EmergingTermRow, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        key = f"{self.keyword}|{self.task}|{self.label}|{int(self.bucket_start)}|{self.bucket_s}"
        object.__setattr__(self, "alert_id", hashlib.sha256(key.encode()).hexdigest()[:32])


def _count(bucket: Bucket, task: str, label: str) -> tuple[int, int]:
    shares = {s.label: s.count for s in bucket.shares.get(task, [])}
    return shares.get(label, 0), bucket.posts.get(task, 0)


def detect_spikes(
    keyword: str, buckets: Sequence[Bucket], rules: Sequence[SpikeRule], bucket_s: int
) -> list[Spike]:
    """Spikes in the newest bucket with enough posts, against the buckets before it."""
    spikes = []
    for rule in rules:
        candidates = [i for i, b in enumerate(buckets) if b.posts.get(rule.task, 0) >= rule.min_posts]
        if not candidates:
            continue
        i = candidates[-1]
        k1, n1 = _count(buckets[i], rule.task, rule.label)
        k0 = n0 = 0
        for b in buckets[max(0, i - rule.baseline_buckets) : i]:
            k, n = _count(b, rule.task, rule.label)
            k0, n0 = k0 + k, n0 + n
        if n0 < rule.min_posts:
            continue
        z = two_proportion_z(k1, n1, k0, n0)
        if z >= rule.z:
            spikes.append(
                Spike(
                    keyword=keyword,
                    task=rule.task,
                    label=rule.label,
                    bucket_start=buckets[i].start,
                    bucket_s=bucket_s,
                    share=round(100 * k1 / n1, 2),
                    baseline=round(100 * k0 / n0, 2),
                    z=round(z, 3),
                    posts=n1,
                    baseline_posts=n0,
                )
            )
    return spikes


# "1m": a replayed feed (source "replay") runs through minutes what a live one runs through hours.
BUCKETS = {"1m": 60, "15m": 900, "1h": 3600, "6h": 21_600, "1d": 86_400}


def parse_bucket(text: str) -> int:
    """'1m', '15m', '1h', '6h', '1d' -> seconds; anything else is a ValueError saying what works."""
    try:
        return BUCKETS[text]
    except KeyError:
        raise ValueError(f"bucket {text!r} is not one of {', '.join(BUCKETS)}") from None
