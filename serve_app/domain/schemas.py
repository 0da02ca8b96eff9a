"""HTTP request and response models (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from serve_app.config.settings import Source
from serve_app.domain.actor_status import ForcedPass
from serve_app.domain.insight_schemas import DriverRow, EmergingTerm, NetSentiment, RepresentativePost
from serve_app.domain.scope import SortOrder
from serve_app.domain.scope_fields import AnalyzeOptions, CommentsOut, ScopeEcho, ScopeFields
from serve_app.domain.tasks import DEFAULT_TASK, TASK_NAMES, TASKS, TaskName

MAX_KEYWORD_CHARS = 100
MAX_TEXT_CHARS = 20_000
MAX_TEXTS = 256
Task = TaskName
# The largest legitimate body is 256 texts of 20,000 characters (UTF-8, JSON-escaped); the
# ingress refuses bigger ones with 413 before reading them.
MAX_BODY_BYTES = 8 * 2**20


class AnalyzeRequest(AnalyzeOptions):  # the scope and comment fields: serve_app.domain.scope_fields
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"keyword": "AI", "limit": 250, "return_plot": True}]}
    )

    keyword: str = Field(
        ...,
        min_length=1,
        max_length=MAX_KEYWORD_CHARS,
        description="What to search posts for (1-100 characters).",
    )
    limit: int = Field(250, ge=1, le=1000, description="Most posts to analyse (1-1000).")
    return_plot: bool = Field(False, description="Include a base64 PNG chart.")
    source: Source | None = Field(None, description="Post source (default from settings).")
    lang: str = Field("en", pattern=r"^[a-z]{2}$", description="ISO 639-1 language of interest.")
    tasks: list[Task] | None = Field(
        None,
        min_length=1,
        description=f"Breakdowns to compute: {', '.join(TASK_NAMES)} (default: every task served).",
    )
    include_other_languages: bool = Field(
        False,
        description="Score posts detected in languages the models were not trained for (counted in "
        "`languages` either way).",
    )
    negative_threshold: float | None = Field(
        None, ge=0.34, le=1.0, description="Sentiment confidence for a post to count as strongly negative."
    )

    @field_validator("tasks")
    @classmethod
    def tasks_unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(v))

    @field_validator("keyword")
    @classmethod
    def keyword_has_text(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("keyword is empty or only whitespace")
        if not any(ch.isalnum() for ch in v):
            raise ValueError("keyword must contain at least one letter or digit")
        return v


class LabelAgg(BaseModel):
    label: str
    pct: float = Field(
        description="Estimated share of posts with this label, % (all labels sum to 100): the model's "
        "per-post probabilities corrected for its known errors, counted as the artifact says "
        "(`breakdown_methods`). Not the same as `count` / posts."
    )
    pct_low: float | None = Field(
        None,
        description="Lower end of the share's 95 % interval. It includes the model's own error (posts and "
        "the counting fit are both resampled); measured to hold the true share ~95 % of the time at "
        "shifted label mixes (model card, 'Counting under shift').",
    )
    pct_high: float | None = Field(None, description="Upper end of the share's 95 % interval.")
    count: int = Field(
        description="Posts whose most likely label this is (each post's top label; their share of the posts "
        "can differ from `pct`, the estimate)."
    )
    avg_score: float = Field(description="Mean confidence of those posts.")


class StronglyNegative(BaseModel):
    threshold: float = Field(description="Sentiment confidence at or above which a negative post counts.")
    count: int
    pct: float = Field(description="Share of the scored posts, %.")
    ids: list[str] = Field(description="Their post ids, most confident first: triage these first.")


class AnalysisBase(BaseModel):
    """An analysis's answer without the breakdowns (`Analysis` adds one field per task)."""

    keyword: str
    count: int = Field(description="Posts fetched.")
    breakdown_methods: dict[str, str] = Field(
        default_factory=dict,
        description="How each task's shares are counted: cc (top labels counted), pcc (mean probability), "
        "acc / pacc (cc / pcc adjusted by the model's confusion on labelled Reddit text) or emq (EM "
        "re-estimation of the label mix on recalibrated probabilities); chosen per model by its error "
        "at shifted label mixes on Reddit validation data (model card).",
    )
    strongly_negative: StronglyNegative | None = None
    net_sentiment: NetSentiment | None = Field(
        None,
        description="Net sentiment of the posts: (positive - negative) / (positive + negative) of the "
        "estimated sentiment shares (`sentiment_agg`), in [-1, 1], with a 95 % interval from the same "
        "bootstrap draws (posts and the counting fit resampled); null when sentiment was not asked for.",
    )
    drivers: dict[str, dict[str, list[DriverRow]]] = Field(
        default_factory=dict,
        description="Per task, per label: up to 10 terms most distinctive of the label's posts against the "
        "other posts (z >= 1.96, in >= 3 of its posts; a label and the rest need >= 5 posts each), highest "
        "z first. Empty for a label without such terms.",
    )
    representatives: dict[str, dict[str, list[RepresentativePost]]] = Field(
        default_factory=dict,
        description="Per task, per label: up to 3 posts typical of the label (confidence and closeness to "
        "its drivers) and unlike each other (maximal marginal relevance).",
    )
    tasks: list[str] = Field(default_factory=lambda: [DEFAULT_TASK], description="Breakdowns computed.")
    scored: int | None = Field(None, description="Posts the models judged (the breakdowns' base).")
    languages: dict[str, int] = Field(
        default_factory=dict, description="Posts per detected language (`und`: too short or unsure to tell)."
    )
    excluded: int = Field(0, description="Posts left out: a language no requested model was trained for.")
    excluded_reasons: dict[str, int] = Field(
        default_factory=dict,
        description="Posts left out, by reason: `language` (as `excluded`), and the source's post hygiene: "
        "`empty` (no title or text), `nsfw`, `stickied`, `promoted`, `crosspost` and `duplicate` "
        "(counted once). Removed or deleted text is dropped; its post keeps its title.",
    )
    newly_scored: int | None = Field(
        None,
        description="Posts the models ran on for this answer; the other scored posts' labels came from the "
        "per-post score cache (scored before by the same model version).",
    )
    partial: bool = Field(
        False, description="The source stopped early (a later page failed, or the deadline came near)."
    )
    partial_reason: str | None = Field(None, description="Why the answer is partial.")
    model_versions: dict[str, str] = Field(default_factory=dict, description="Model version per task.")
    plot_base64: str | None = None
    post_source: str = Field(description="Where the posts came from (reddit or jsonl).")
    model_version: str
    scope: ScopeEcho | None = Field(
        None, description="The scope and comment options applied (subreddits, time, sort, comments)."
    )
    comments: CommentsOut | None = Field(None, description="What adding comments did, when asked for.")
    analysis_id: str | None = Field(
        None,
        description="This analysis's id (its history record's): GET /analyses/{analysis_id}/posts exports "
        "the scored texts. A cached answer carries the id it was computed with.",
    )


def _breakdown_fields() -> dict[str, Any]:
    """One response field per task (and one for the shares among a rest label's others),
    from the task registry: a new task gets its field without touching this module."""
    fields: dict[str, Any] = {}
    for spec in TASKS.values():
        if spec.response_field == "agg":
            # `agg` predates tasks: the seed clients read it as a list, empty when not asked for.
            fields["agg"] = (
                list[LabelAgg],
                Field(
                    default_factory=list,
                    description=f"{spec.title} breakdown over all scored posts ({spec.description}); empty "
                    f"when {spec.name} was not asked for.",
                ),
            )
        else:
            fields[spec.response_field] = (
                list[LabelAgg] | None,
                Field(
                    None,
                    description=f"{spec.title} breakdown over all scored posts ({spec.description}), "
                    "when asked for.",
                ),
            )
        if spec.among_field:
            fields[spec.among_field] = (
                list[LabelAgg] | None,
                Field(None, description=f"Shares among the posts whose label is not `{spec.rest_label}`."),
            )
    return fields


# The cached answer: what `/analyze` returns, less `source` and `time`.
if TYPE_CHECKING:
    Analysis = AnalysisBase
else:
    Analysis = create_model("Analysis", __base__=AnalysisBase, **_breakdown_fields())


class AnalyzeResponse(Analysis):
    source: Literal["cache", "inference"]
    time: float = Field(description="Seconds spent answering this request.")


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "i am so happy today"}, {"texts": ["great news!", "this is awful"]}]
        },
    )

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    texts: list[str] | None = Field(None, min_length=1, max_length=MAX_TEXTS)
    task: Task = Field(
        DEFAULT_TASK,
        description="Which head: " + "; ".join(f"{t.name} ({t.description})" for t in TASKS.values()) + ".",
    )

    @field_validator("text")
    @classmethod
    def text_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("text is empty or only whitespace: there is nothing to classify")
        return v

    @field_validator("texts")
    @classmethod
    def texts_not_too_long(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for i, t in enumerate(v):
                if len(t) > MAX_TEXT_CHARS:
                    raise ValueError(f"texts[{i}] has {len(t)} characters; at most {MAX_TEXT_CHARS}")
                if not t.strip():
                    raise ValueError(f"texts[{i}] is empty or only whitespace: there is nothing to classify")
        return v

    @model_validator(mode="after")
    def exactly_one(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of 1-256 strings)")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class TextPrediction(BaseModel):
    label: str
    confidence: float
    scores: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[TextPrediction]
    task: str = DEFAULT_TASK
    model_version: str
    time: float


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    model_loaded: bool
    model_version: str | None
    redis: Literal["ok", "down", "disabled"]


class LabelsResponse(BaseModel):
    labels: list[str]
    model_version: str
    tasks: dict[str, list[str]] = Field(default_factory=dict, description="Labels of every served task.")


class SyncStatus(BaseModel):
    pending: int = Field(description="Analyses in Redis not yet in PostgreSQL.")
    synced_total: int
    recovered_total: int
    last_sync: float | None = Field(description="Unix time of the last record synced.")
    cpu: float | None = Field(description="Last sampled machine CPU %.")
    cpu_threshold: float
    cpu_pauses: int = Field(0, description="Passes skipped because the machine's CPU was over the threshold.")
    paused_reason: str | None
    running: bool
    last_forced_pass: ForcedPass | None = Field(None, description="Outcome of the last `sync --now`.")
    unsaved_in_ingress: int = Field(0, description="Records held in memory while Redis is down.")


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, object]]


def _clean_keyword(v: str) -> str:
    return AnalyzeRequest.keyword_has_text(v)  # one rule for every keyword the API takes


class WatchRequest(ScopeFields):  # subreddits, time window, sort: serve_app.domain.scope_fields
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"keyword": "Intel", "every_s": 300, "tasks": list(TASK_NAMES)}]},
    )

    keyword: str = Field(..., min_length=1, max_length=MAX_KEYWORD_CHARS, description="What to watch.")
    every_s: int = Field(..., ge=60, le=7 * 86_400, description="Seconds between polls (60 s to 7 days).")
    source: Source | None = Field(None, description="Post source (default from settings).")
    tasks: list[Task] | None = Field(None, min_length=1, description="Tasks to track (default: all served).")
    limit: int = Field(100, ge=1, le=1000, description="Newest posts fetched per poll.")
    sort: SortOrder = Field("new", description="Search order per poll (a monitor wants the newest posts).")

    @field_validator("keyword")
    @classmethod
    def keyword_has_text(cls, v: str) -> str:
        return _clean_keyword(v)

    @field_validator("tasks")
    @classmethod
    def tasks_unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(v))


class WatchOut(BaseModel):
    keyword: str
    every_s: int
    source: str
    tasks: list[str]
    limit: int
    created_at: float | None = None
    last_run_at: float | None = Field(None, description="Unix time of the last poll.")
    last_error: str | None = Field(None, description="Why the last poll failed, if it did.")
    scope: ScopeEcho | None = Field(None, description="The watch's subreddits, time window and sort.")


class WatchList(BaseModel):
    watches: list[WatchOut]


class TrendShare(BaseModel):
    label: str
    count: int
    pct: float
    pct_low: float = Field(description="95 % Wilson interval, lower end.")
    pct_high: float


class TrendBucket(BaseModel):
    start: float = Field(description="Bucket start, unix seconds (UTC multiples of the bucket size).")
    posts: dict[str, int] = Field(description="Posts with a label, per task.")
    shares: dict[str, list[TrendShare]] = Field(
        description="Per task, each label's share of the bucket's posts."
    )
    net_sentiment: NetSentiment | None = Field(
        None,
        description="(positive - negative) / (positive + negative) of the bucket's sentiment labels, "
        "95 % Wilson interval; null without sentiment or polar posts.",
    )


class TrendsResponse(BaseModel):
    keyword: str
    bucket_s: int
    since: float
    buckets: list[TrendBucket] = Field(description="Oldest first; buckets without posts are left out.")


class AlertOut(BaseModel):
    alert_id: str
    keyword: str
    task: str
    label: str
    bucket_start: float
    bucket_s: int
    share: float = Field(description="The bucket's share of the label, %.")
    baseline: float = Field(description="Its share over the trailing baseline buckets, %.")
    z: float = Field(description="One-sided two-proportion z statistic.")
    posts: int
    baseline_posts: int
    created_at: float
    emerging_terms: list[EmergingTerm] = Field(
        default_factory=list,
        description="What the spike is about: terms whose share of the keyword's posts rose most in the "
        "bucket against the trailing baseline (the drivers' statistic, z >= 1.96, in >= 3 posts), highest "
        "z first.",
    )
    delivery: Literal["none", "pending", "delivered", "failed"]
    attempts: int
    last_error: str | None = None
    delivered_at: float | None = None


class AlertsResponse(BaseModel):
    alerts: list[AlertOut]
