"""The shapes of the rows that cross deployment boundaries (Classifier -> Ingress ->
Aggregator -> cache and history). They stay plain dicts on the wire (JSON in Redis and in
responses), typed here so every producer and consumer agrees on their keys."""

from __future__ import annotations

from typing import TypedDict


class PredictionRow(TypedDict):
    """One text's prediction by one task's head."""

    label: str  # the most likely label
    confidence: float  # its calibrated probability
    scores: dict[str, float]  # every label's probability


class ShareRow(TypedDict):
    """One label's share in a breakdown (the API's `LabelAgg`)."""

    label: str
    pct: float  # estimated share, %; a breakdown's rows sum to 100
    pct_low: float  # 95 % interval (bootstrap over posts)
    pct_high: float
    count: int  # posts whose top label it is
    avg_score: float  # their mean confidence
