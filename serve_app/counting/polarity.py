"""Net sentiment, (positive - negative) / (positive + negative), for trends and comparisons.

From counts (a trend bucket's posts): q = positive / (positive + negative) has a 95 %
Wilson interval, and net sentiment is 2q - 1, so its interval is [2 low - 1, 2 high - 1].
From served shares (an answer counted by pcc or pacc has no exact counts): the same, with
the polar posts' effective number (positive + negative) / 100 * scored. None when there is
no positive or negative post: the figure is undefined, not 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from serve_app.domain.records import NetSentimentRow

Z95 = 1.959963984540054


def _wilson(p: float, n: float) -> tuple[float, float]:
    denom = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def net_from_counts(positive: float, negative: float) -> NetSentimentRow | None:
    """{value, low, high} in [-1, 1] from (effective) counts of positive and negative posts."""
    polar = positive + negative
    if polar <= 0:
        return None
    q = positive / polar
    low, high = _wilson(q, polar)
    value = 2 * q - 1
    return {
        "value": round(value, 4),
        "low": round(min(value, 2 * low - 1), 4),
        "high": round(max(value, 2 * high - 1), 4),
    }


def net_from_shares(rows: Sequence[Mapping[str, Any]], scored: int) -> NetSentimentRow | None:
    """From a sentiment breakdown's rows (label, pct) over `scored` posts."""
    pct = {r["label"]: float(r["pct"]) for r in rows}
    return net_from_counts(pct.get("positive", 0.0) / 100 * scored, pct.get("negative", 0.0) / 100 * scored)


def net_of_counts(by_label: Mapping[str, int]) -> NetSentimentRow | None:
    """A task's net sentiment from its label counts, if its labels include positive and negative."""
    if "positive" not in by_label and "negative" not in by_label:
        return None
    return net_from_counts(by_label.get("positive", 0), by_label.get("negative", 0))
