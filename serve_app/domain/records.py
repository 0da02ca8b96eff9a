"""The shapes of the rows that cross deployment boundaries (Classifier -> Ingress ->
Aggregator -> cache and history). They stay plain dicts on the wire (JSON in Redis and in
responses), typed here so every producer and consumer agrees on their keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from serve_app.counting.quantify import Counting


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


class StronglyNegativeRow(TypedDict):
    """The posts to triage: negative at or above `threshold` confidence (the API's `StronglyNegative`)."""

    threshold: float
    count: int
    pct: float
    ids: list[str]


class NetSentimentRow(TypedDict):
    """(positive - negative) / (positive + negative), with its 95 % interval (the API's `NetSentiment`)."""

    value: float
    low: float
    high: float


class DriverTermRow(TypedDict):
    """A term distinctive of a label's posts (the API's `DriverRow`; serve_app.explain.drivers)."""

    term: str
    z: float
    posts: int
    share: float
    post_ids: list[str]
    net_sentiment: NetSentimentRow | None


class RepresentativeRow(TypedDict):
    """A post typical of a label (the API's `RepresentativePost`; serve_app.explain.representatives)."""

    id: str
    link: str
    subreddit: str
    created_utc: float
    snippet: str
    confidence: float


class EmergingTermRow(TypedDict):
    """A term whose share rose in a spiking bucket against the baseline (alerts)."""

    term: str
    z: float
    posts: int


# Per task, per label (drivers and representative posts of an analysis).
Drivers = dict[str, dict[str, list[DriverTermRow]]]
Representatives = dict[str, dict[str, list[RepresentativeRow]]]
# What the Classifier returns to the flow: per task, (model version that produced the rows,
# one row per text in order).
ClassifyResult = dict[str, tuple[str, list[PredictionRow]]]


@dataclass(frozen=True)
class Summary:
    """The Aggregator's answer: each breakdown under its response field (the task registry's
    `response_field` and `among_field`), the chart, and each task's drivers and
    representative posts per label (when the posts were given)."""

    breakdowns: dict[str, list[ShareRow]]
    plot_base64: str | None = None
    drivers: Drivers = field(default_factory=dict)
    representatives: Representatives = field(default_factory=dict)
    net_sentiment: NetSentimentRow | None = None  # from the sentiment breakdown's draws


@dataclass(frozen=True)
class TaskModel:
    """One task's served model, as the Classifier describes it."""

    version: str
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    max_length: int
    model_dir: str
    breakdown_method: str = "cc"  # how the artifact says its breakdown is counted
    adjustment: tuple[tuple[float, ...], ...] | None = None
    counting: Counting | None = None  # the artifact's full fit (serve_app.counting.quantify)


@dataclass(frozen=True)
class ServedModels:
    """What the Classifier serves: a model per task, and the task `/predict` defaults to."""

    default_task: str
    tasks: dict[str, TaskModel]
    # The candidate version (serve_app/lifecycle/rollout.py) per task it has a head for, and the share
    # of keywords it answers (canary); empty / 0 when no candidate is configured.
    candidate: dict[str, TaskModel] = field(default_factory=dict)
    canary_share: float = 0.0

    @property
    def default(self) -> TaskModel:
        return self.tasks[self.default_task]

    def as_canary(self) -> ServedModels:
        """The models a canary keyword is answered by: the candidate where it has the task."""
        return ServedModels(self.default_task, {**self.tasks, **self.candidate}, {}, 0.0)

    def versions(self, tasks: Sequence[str]) -> dict[str, str]:
        return {t: self.tasks[t].version for t in tasks}


class AnalysisResult(TypedDict):
    """One analysis as it is cached: the `/analyze` answer without `source` and `time`.

    Each breakdown sits under its task's response field (`agg`, `emotional_agg`,
    `sentiment_agg`, ...), so the keys beyond these come from the task registry."""

    keyword: str
    count: int
    breakdown_methods: dict[str, str]
    strongly_negative: StronglyNegativeRow | None
    tasks: list[str]
    scored: int
    languages: dict[str, int]
    excluded: int
    excluded_reasons: dict[str, int]
    newly_scored: int
    partial: bool
    partial_reason: str | None
    model_versions: dict[str, str]
    plot_base64: str | None
    post_source: str
    model_version: str


RECORD_FORMAT = 2  # history records before 2 kept emotion at the top level of each post


class RecordPost(TypedDict):
    """One fetched post in a history record, with its prediction per scored task (none
    when it was left out for its language)."""

    id: str
    title: str
    body: str
    subreddit: str
    created_utc: float
    score: int
    url: str
    lang: str
    lang_confidence: float
    predictions: dict[str, PredictionRow]
    kind: NotRequired[str]  # post | comment (issue 27; records before it: post)
    parent_id: NotRequired[str | None]  # a comment's post


class HistoryRecord(TypedDict):
    """One analysis as it travels to PostgreSQL: Redis, the replica's journal, the sync."""

    format: int
    query_id: str  # a hash of the rest: the same analysis recorded twice has one id
    keyword: str
    keyword_norm: str
    source: str
    limit: int
    lang: str
    model_version: str
    model_versions: dict[str, str]
    tasks: list[str]
    created_at: float
    breakdowns: dict[str, list[ShareRow]]  # per task, over all scored posts
    among: dict[str, list[ShareRow]]  # per task with a rest label: shares among the others
    breakdown_methods: dict[str, str]
    n_scored: int
    strongly_negative: StronglyNegativeRow | None
    languages: dict[str, int]
    partial_reason: str | None
    excluded: dict[str, int]
    posts: list[RecordPost]
    scope: NotRequired[ScopeRecord]  # subreddits, time, sort, comments (issue 27)


class ScopeRecord(TypedDict):
    """An analysis's scope as its history record keeps it (times in unix seconds)."""

    subreddits: list[str]
    exclude_subreddits: list[str]
    time_window: str | None
    since: float | None
    until: float | None
    sort: str
    include_comments: int
    count_over: str
