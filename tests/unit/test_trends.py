"""Trends and spike alerts as pure functions: intervals, the z-test, bucket assembly."""

from __future__ import annotations

import pytest

from serve_app.monitoring.trends import (
    Bucket,
    SpikeRule,
    buckets_from_rows,
    detect_spikes,
    parse_bucket,
    two_proportion_z,
    wilson,
)

pytestmark = pytest.mark.unit


def test_wilson_interval_matches_the_textbook_values() -> None:
    assert wilson(0, 0) == (0.0, 0.0)
    low, high = wilson(10, 100)  # 10 %: 5.52 % .. 17.44 % (Wilson, 95 %)
    assert (low, high) == pytest.approx((5.52, 17.44), abs=0.01)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 100.0


def test_two_proportion_z() -> None:
    assert two_proportion_z(50, 100, 50, 100) == 0.0
    assert two_proportion_z(30, 100, 10, 100) == pytest.approx(3.536, abs=0.001)
    assert two_proportion_z(1, 0, 1, 10) == 0.0


def rows(
    counts: list[dict[str, int]], task: str = "emotion", size: int = 3600
) -> list[tuple[float, str, str, int]]:
    return [(i * size, task, label, n) for i, by_label in enumerate(counts) for label, n in by_label.items()]


def test_buckets_carry_every_registry_label_in_order() -> None:
    (b,) = buckets_from_rows(rows([{"anger": 3, "joy": 1}]))
    assert b.posts == {"emotion": 4}
    labels = [s.label for s in b.shares["emotion"]]
    assert labels == ["sadness", "joy", "love", "anger", "fear", "surprise", "neutral"]
    anger = b.shares["emotion"][3]
    assert (anger.count, anger.pct) == (3, 75.0) and anger.pct_low < 75 < anger.pct_high


BASE = [{"anger": 3, "neutral": 27}] * 24  # 10 % anger, 30 posts an hour


def test_a_rise_beyond_chance_is_a_spike_and_noise_is_not() -> None:
    rule = SpikeRule("emotion", "anger", z=3.0, min_posts=20, baseline_buckets=24)
    spike_buckets = buckets_from_rows(rows([*BASE, {"anger": 15, "neutral": 15}]))
    (spike,) = detect_spikes("intel", spike_buckets, [rule], 3600)
    assert (spike.share, spike.baseline, spike.posts, spike.baseline_posts) == (50.0, 10.0, 30, 720)
    assert spike.z > 3 and spike.bucket_start == 24 * 3600
    # The same alert from another pass has the same id: it is recorded once.
    assert detect_spikes("intel", spike_buckets, [rule], 3600)[0].alert_id == spike.alert_id
    noise = buckets_from_rows(rows([*BASE, {"anger": 6, "neutral": 24}]))  # 20 % of 30: chance
    assert detect_spikes("intel", noise, [rule], 3600) == []


def test_too_few_posts_never_alert() -> None:
    rule = SpikeRule("emotion", "anger", min_posts=20)
    few_now = buckets_from_rows(rows([*BASE, {"anger": 5, "neutral": 0}]))  # the 5-post bucket is skipped
    assert detect_spikes("k", few_now, [rule], 3600) == []
    no_baseline = buckets_from_rows(rows([{"anger": 1, "neutral": 9}, {"anger": 25, "neutral": 5}]))
    assert detect_spikes("k", no_baseline, [rule], 3600) == []
    assert detect_spikes("k", [Bucket(0, {}, {})], [rule], 3600) == []


def test_bucket_names() -> None:
    assert parse_bucket("1h") == 3600 and parse_bucket("1d") == 86_400
    with pytest.raises(ValueError, match="15m, 1h, 6h, 1d"):
        parse_bucket("2h")
