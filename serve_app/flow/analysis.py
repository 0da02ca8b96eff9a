"""The analysis flow behind `/analyze`, the warmer and the keyword monitor.

A question is answered from the cache, or computed once (single flight across callers and
replicas): fetch posts, keep those the models can read, score them (posts scored before by
the same model versions come from the per-post score cache), aggregate, cache the answer
and hand its history record over for PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import redis
from ray.serve.handle import DeploymentHandle

from serve_app.config.settings import ModelSettings, SourcesSettings
from serve_app.counting.quantify import Counting, served_counting
from serve_app.domain.posts import FetchResult
from serve_app.domain.question import Question
from serve_app.domain.records import ClassifyResult, PredictionRow, ServedModels, Summary
from serve_app.domain.schemas import Analysis
from serve_app.domain.scope import CountOver, Scope, counted_kinds
from serve_app.domain.scope_fields import scope_echo
from serve_app.domain.tasks import DEFAULT_TASK, TASKS, TRIAGE_TASK
from serve_app.flow.aggregate import strongly_negative
from serve_app.flow.calls import Admission, call_with_retries
from serve_app.lifecycle.rollout import keyword_in_canary
from serve_app.lifecycle.shadow import ShadowTag
from serve_app.model.language import UNDETERMINED, count_languages, is_supported, readable_languages
from serve_app.model.preprocess import post_text
from serve_app.model.served import ServedCatalog
from serve_app.monitoring import metrics
from serve_app.sources.request_budget import Priority
from serve_app.stores.cache import AnalysisCache
from serve_app.stores.held_records import HeldRecords
from serve_app.stores.history import make_record, queue_track
from serve_app.stores.score_cache import ScoreCache
from serve_app.stores.single_flight import Answer, SingleFlight

log = logging.getLogger("ray.serve.emotion_monitor.analysis")

AnswerSource = Literal["cache", "inference"]
T = TypeVar("T")


@dataclass(frozen=True)
class Handles:
    """The deployments an analysis calls."""

    fetcher: DeploymentHandle
    classifier: DeploymentHandle
    aggregator: DeploymentHandle


@dataclass(frozen=True)
class FlowConfig:
    # default_source, and negative_threshold (sentiment confidence for "strongly negative")
    sources: SourcesSettings = field(default_factory=SourcesSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    history: bool = True  # leave a record of each computed analysis for PostgreSQL
    partial_ttl_s: int = 60  # a partial answer is cached this long: the source may recover soon
    fetch_timeout_s: float = 60.0
    classify_timeout_s: float = 60.0
    call_retries: int = 5  # re-sends of an idempotent call whose replica died
    insights: bool = True  # drivers and representative posts per label (the bench turns them off)


@dataclass(frozen=True)
class BackgroundRun:
    """An analysis asked for by a background actor (the warmer, the keyword monitor)."""

    keyword: str
    limit: int
    source: str
    tasks: tuple[str, ...] | None = None  # every served task by default
    # The warmer's refresh: compute only when the cached answer is missing or has less
    # than this many seconds left. None: always compute (the monitor wants new posts).
    refresh_below_s: int | None = None
    scope: Scope = field(default_factory=Scope)  # a watch's subreddits, time window, sort


@dataclass(frozen=True)
class BackgroundOutcome:
    computed: bool
    count: int = 0
    scored: int = 0
    newly_scored: int = 0
    partial: bool = False


@dataclass(frozen=True)
class Selection:
    """The fetched posts the models will read (by index), and why the others were left out."""

    keep: list[int]
    texts: list[str]
    langs: list[str]
    excluded: dict[str, int]


def select_posts(fetched: FetchResult, models: ServedModels, q: Question) -> Selection:
    """Keep the posts in a language one of the asked-for models reads (all of them with
    `include_other_languages`)."""
    posts = fetched.posts
    readable = readable_languages(models.tasks[t].languages for t in q.tasks)
    langs = [p.lang or UNDETERMINED for p in posts]
    readable_ok = [i for i, lg in enumerate(langs) if q.include_other_languages or is_supported(lg, readable)]
    # `count_over`: texts of a kind the breakdowns do not count are kept in the record, unscored.
    kinds = counted_kinds(q.count_over)
    keep = [i for i in readable_ok if posts[i].kind in kinds]
    kept = set(keep)
    metrics.record_posts(langs, [i in kept for i in range(len(posts))])
    excluded = {
        "language": len(posts) - len(readable_ok),
        "not_counted": len(readable_ok) - len(keep),
        **fetched.excluded,
    }
    return Selection(
        keep,
        [post_text(posts[i].title, posts[i].body) for i in keep],
        langs,
        {reason: n for reason, n in excluded.items() if n},
    )


def build_analysis(
    q: Question,
    fetched: FetchResult,
    sel: Selection,
    summary: Summary,
    preds: dict[str, list[PredictionRow]],
    counting: dict[str, Counting],
    versions: dict[str, str],
    newly: int,
) -> Analysis:
    posts = fetched.posts
    negative = None
    if TRIAGE_TASK in preds:
        ids = [posts[i].id for i in sel.keep]
        label = TASKS[TRIAGE_TASK].triage_label or ""
        negative = strongly_negative(ids, preds[TRIAGE_TASK], q.negative_threshold, label)
    return Analysis.model_validate(
        {
            **summary.breakdowns,
            "keyword": q.keyword,
            "count": len(posts),
            "breakdown_methods": {t: c.method for t, c in counting.items()},
            "strongly_negative": negative,
            "tasks": list(q.tasks),
            "scored": len(sel.keep),
            "languages": count_languages(sel.langs),
            "excluded": len(posts) - len(sel.keep),
            "excluded_reasons": sel.excluded,
            "newly_scored": newly,
            "partial": fetched.partial is not None,
            "partial_reason": fetched.partial,
            "model_versions": versions,
            "plot_base64": summary.plot_base64,
            "net_sentiment": summary.net_sentiment,
            "drivers": summary.drivers,
            "representatives": summary.representatives,
            "post_source": q.source,
            "model_version": versions.get(DEFAULT_TASK) or next(iter(versions.values())),
            "scope": scope_echo(q.scope, q.include_comments, q.count_over, time.time()),
            "comments": dataclasses.asdict(fetched.comments) if fetched.comments else None,
        }
    )


class AnalysisFlow:
    def __init__(
        self,
        handles: Handles,
        catalog: ServedCatalog,
        cache: AnalysisCache,
        held: HeldRecords,
        admission: Admission,
        cfg: FlowConfig,
        single_flight_s: float = 90.0,
        score_ttl_s: int = 0,
    ) -> None:
        self.handles, self.catalog, self.cache, self.held = handles, catalog, cache, held
        self.admission, self.cfg = admission, cfg
        self.flights = SingleFlight(cache, single_flight_s)
        self.scores = ScoreCache(cache, score_ttl_s)

    def question(
        self,
        models: ServedModels,
        keyword: str,
        limit: int,
        source: str | None = None,
        tasks: Sequence[str] | None = None,
        negative_threshold: float | None = None,
        lang: str = "en",
        include_other_languages: bool = False,
        *,
        scope: Scope | None = None,
        include_comments: int = 0,
        count_over: CountOver = "both",
    ) -> Question:
        """The question asked, with every default filled in (source, tasks, threshold)."""
        chosen = self.catalog.plan(models, tasks)
        threshold = self.cfg.model.negative_threshold if negative_threshold is None else negative_threshold
        return Question(
            keyword,
            limit,
            source or self.cfg.sources.default_source,
            tuple(chosen),
            threshold,
            lang,
            include_other_languages,
            scope or Scope(),
            include_comments,
            count_over,
        )

    @staticmethod
    def route(models: ServedModels, keyword: str) -> tuple[ServedModels, bool]:
        """The models that answer this keyword, and whether it is a canary one (sticky by
        keyword: the candidate answers `canary_share` of keywords, always the same ones)."""
        if models.candidate and keyword_in_canary(keyword, models.canary_share):
            return models.as_canary(), True
        return models, False

    async def answer(self, q: Question, models: ServedModels, plot: bool) -> tuple[Answer, AnswerSource]:
        """The answer (from the cache, or computed once for every concurrent asker)."""
        models, canary = self.route(models, q.keyword)
        # The key names the versions that answer, so canary answers never mix with live ones.
        key = q.key(models.versions(q.tasks))
        cached = await self.cache.get(key)
        if self.held.due:
            await self.held.save(None)  # Redis may be back: hand over what was held
        hit = cached is not None and (not plot or bool(cached.plot_base64))
        metrics.record_cache(hit)
        await self._track(q)
        if cached is not None and hit:
            return cached, "cache"
        with self.admission.admit():
            result, computed = await self.flights.run(
                key, lambda: self._compute(q, models, plot, canary=canary), with_plot=plot
            )
        return result, "inference" if computed else "cache"

    async def run_background(self, run: BackgroundRun) -> BackgroundOutcome:
        """One analysis for a background actor, at background priority at the source."""
        models = await self.catalog.get()
        q = self.question(models, run.keyword, run.limit, run.source, run.tasks, scope=run.scope)
        models, canary = self.route(models, q.keyword)
        key = q.key(models.versions(q.tasks))
        if run.refresh_below_s is not None:
            if self.cache.client is None:
                return BackgroundOutcome(False)
            try:
                if int(await self.cache.client.ttl(key)) > run.refresh_below_s:
                    return BackgroundOutcome(False)
            except (redis.RedisError, OSError):
                return BackgroundOutcome(False)
        result, computed = await self.flights.run(
            key, lambda: self._compute(q, models, priority="background", canary=canary)
        )
        return BackgroundOutcome(
            computed, result.count, result.scored or 0, result.newly_scored or 0, result.partial
        )

    async def _compute(
        self,
        q: Question,
        models: ServedModels,
        plot: bool = False,
        priority: Priority = "user",
        canary: bool = False,
    ) -> Answer:
        """Fetch, pick the posts the models can read, score, aggregate; cache and record."""
        fetched: FetchResult = await self._call(
            f"source {q.source!r}",
            lambda: self.handles.fetcher.fetch.remote(
                q.source, q.keyword, q.limit, priority, q.scope, q.include_comments
            ),
            self.cfg.fetch_timeout_s,
        )
        sel = select_posts(fetched, models, q)
        ids = [fetched.posts[i].id for i in sel.keep]
        preds, versions, newly = await self._score(q, ids, sel.texts, models, canary)
        # A version rolled since `models` was read: re-read next time. The answer is cached
        # under the versions that actually produced it.
        self.catalog.note_versions(models.versions(q.tasks), versions)
        counting = {t: served_counting(models.tasks[t]) for t in q.tasks}
        partial = fetched.partial is not None
        scored = [fetched.posts[i] for i in sel.keep]  # the predictions' order
        summary: Summary = await self._call(
            "aggregator",
            lambda: self.handles.aggregator.summarize.remote(
                q.keyword, preds, plot, counting, partial, scored if self.cfg.insights else None
            ),
            30,
        )
        analysis = build_analysis(q, fetched, sel, summary, preds, counting, versions, newly)
        # The answer names its history record (the export's key); cached with it, so a cache
        # hit gives the id it was computed with.
        record = make_record(q, analysis, fetched.posts, preds, sel.keep)
        analysis.analysis_id = record["query_id"]
        await self.cache.set(q.key(versions), analysis, self.cfg.partial_ttl_s if partial else None)
        # Read back from its JSON form (the scope's datetimes as ISO strings), as a cache hit is.
        result = Analysis.model_validate(analysis.model_dump(mode="json"))
        if self.cfg.history and fetched.posts:
            await self.held.save(record)
        return result

    async def _score(
        self, q: Question, ids: list[str], texts: list[str], models: ServedModels, canary: bool = False
    ) -> tuple[dict[str, list[PredictionRow]], dict[str, str], int]:
        """Rows per task for these posts, the model versions, and how many posts the models ran on.

        Posts scored before under the served versions come from the per-post score cache;
        only the others go to the Classifier (every requested head at once: one encoder pass).
        """
        tasks = list(q.tasks)
        expected = models.versions(tasks)
        known = await self.scores.get(q.source, ids, expected)
        todo = [j for j, pid in enumerate(ids) if any(pid not in known[t] for t in tasks)]
        versions = expected
        fresh: dict[str, dict[str, PredictionRow]] = {t: {} for t in tasks}
        if todo:
            # The post ids let the Classifier pair a sampled share with the candidate (shadow).
            tag = ShadowTag(q.source, tuple(ids[j] for j in todo))
            answers = await self._classify([texts[j] for j in todo], tasks, tag, canary)
            versions = {t: version for t, (version, _) in answers.items()}
            if versions != expected and len(todo) < len(ids):
                # A model version was rolled meanwhile: cached rows belong to the old one.
                todo, known = list(range(len(ids))), {t: {} for t in tasks}
                answers = await self._classify(texts, tasks, ShadowTag(q.source, tuple(ids)), canary)
                versions = {t: version for t, (version, _) in answers.items()}
            for t, (_, rows) in answers.items():
                fresh[t] = {ids[j]: row for j, row in zip(todo, rows, strict=True)}
            await self.scores.put(q.source, fresh, versions)
        metrics.record_scores(len(todo), len(ids) - len(todo))
        preds = {t: [fresh[t].get(pid) or known[t][pid] for pid in ids] for t in tasks}
        return preds, versions, len(todo)

    async def _classify(
        self, texts: list[str], tasks: list[str], shadow: ShadowTag | None = None, canary: bool = False
    ) -> ClassifyResult:
        answers: ClassifyResult = await self._call(
            "classifier",
            lambda: self.handles.classifier.classify_tasks.remote(texts, tasks, shadow, canary),
            self.cfg.classify_timeout_s,
        )
        return answers

    async def _call(self, what: str, send: Callable[[], Awaitable[T]], timeout: float) -> T:
        return await call_with_retries(what, send, timeout, self.cfg.call_retries)

    async def _track(self, q: Question) -> None:
        """Count the question in this hour's hot keywords (what the warmer refreshes)."""
        store = self.held.store
        if store.client is None or not store.available:
            return
        try:
            await queue_track(
                store.client.pipeline(transaction=False), q.keyword, q.limit, q.source
            ).execute()
        except (redis.RedisError, OSError) as exc:
            store.mark_failed(exc)
