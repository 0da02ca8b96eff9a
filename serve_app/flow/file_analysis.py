"""The analysis of a user's own texts (a JSONL or CSV file), in this process, streamed.

The same answer as `/analyze` (`serve_app.domain.schemas.Analysis`) by the same functions: the
file's rows become `Post`s, the service's language selection (`select_posts`) picks those the
models read, the ONNX predictor scores them (`OnnxPredictor.probabilities_all`, or a Ray
cluster: `serve_app.flow.file_ray`), rows are built as the Classifier builds them (`probs_to_rows`)
and the Aggregator's own `summarize` and `strongly_negative` count them.

Memory stays flat in the file's size: a chunk of texts at a time is read, selected and
scored; per text its probabilities (float32) go to a temporary file (`ProbabilityStore`,
read back a task at a time for the counting), only the strongly negative texts' ids are
kept (the answer lists them), and the rows the Aggregator reads are made on the fly
(`PredictionRows`). Extra per-text work
(drivers, representative texts) plugs in as a `TextSink` that sees every chunk once.

No Ray here: the counting (`serve_app.flow.aggregate`) and the rows
(`serve_app.model.batching`) are the very functions the Aggregator and the Classifier call.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, overload

import numpy as np

from serve_app.counting.quantify import Counting
from serve_app.domain.posts import FetchResult, Post, PostFilter, clean_body
from serve_app.domain.question import Question
from serve_app.domain.records import PredictionRow, ServedModels, TaskModel
from serve_app.domain.schemas import Analysis
from serve_app.domain.tasks import DEFAULT_TASK, TASKS, TRIAGE_TASK
from serve_app.explain.insights import InsightBuilder
from serve_app.flow.aggregate import negative_hits, summarize, triage_row
from serve_app.flow.analysis import Selection, select_posts
from serve_app.flow.prob_store import ProbabilityStore
from serve_app.flow.text_files import TextFields, read_posts
from serve_app.model.batching import probs_to_rows
from serve_app.model.language import count_languages, detect
from serve_app.model.predictor import OnnxPredictor, read_artifact_info

POST_SOURCE = "file"
# Terms a file's drivers are counted over, per task (the most frequent; pruned at 1.25x):
# a real file's vocabulary keeps growing with its length (most terms are in one text), so
# the bound is reached within ~20,000 texts and memory stays flat after it. A dropped term
# was rarer than every kept one when dropped (a few texts in a long file), far from a
# driver's share; `bench file` states the peak RSS.
FILE_MAX_TERMS = 50_000
# Scores a chunk's texts: every requested task's probabilities, one row per text, input order.
Scorer = Callable[[Sequence[str]], Mapping[str, np.ndarray]]


class FileAnalysisError(ValueError):
    """The analysis cannot run as asked (a task the model lacks); the message says what to change."""


@dataclass(frozen=True)
class FileOptions:
    """What to analyse, with the service's defaults (serve_app.config.settings.Settings)."""

    tasks: tuple[str, ...] | None = None  # default: every head of the model
    negative_threshold: float = 0.8
    lang: str = "en"
    include_other_languages: bool = False
    lang_min_confidence: float = 0.8
    # The service drops exact repeats (Reddit spam); in a user's file a repeat is usually a
    # real answer ("Great!") and counts, unless asked.
    dedupe: bool = False


class PredictionRows(Sequence[PredictionRow]):
    """One task's rows over all scored texts, made when read from the compact probabilities
    (4 bytes a label a text) exactly as the Classifier makes them (`probs_to_rows`)."""

    def __init__(self, probs: np.ndarray, labels: Sequence[str]) -> None:
        self.probs, self.labels = probs, tuple(labels)

    def __len__(self) -> int:
        return len(self.probs)

    @overload
    def __getitem__(self, i: int) -> PredictionRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[PredictionRow]: ...

    def __getitem__(self, i: int | slice) -> PredictionRow | list[PredictionRow]:
        if isinstance(i, slice):
            return probs_to_rows(self.probs[i], self.labels)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return probs_to_rows(self.probs[i : i + 1], self.labels)[0]

    def __iter__(self) -> Iterator[PredictionRow]:
        for start in range(0, len(self.probs), 1024):
            yield from probs_to_rows(self.probs[start : start + 1024], self.labels)


class TextSink(Protocol):
    """More an analysis keeps while the texts stream by (drivers, representative texts):
    it sees each chunk's scored posts once and adds its fields to the answer."""

    def add(self, posts: Sequence[Post], preds: Mapping[str, Sequence[PredictionRow]]) -> None: ...

    def answer_fields(self) -> Mapping[str, object]: ...


def served_models(model_dir: Path, max_length: int | None, tasks: Sequence[str] | None) -> ServedModels:
    """The models that answer, described as the Classifier describes its own (`Classifier.info`)."""
    info = read_artifact_info(model_dir)
    chosen = list(dict.fromkeys(tasks)) if tasks else [t for t in info.heads if t in TASKS]
    missing = [t for t in chosen if t not in info.heads or t not in TASKS]
    if missing or not chosen:
        raise FileAnalysisError(
            f"--task {', '.join(missing) or '(none)'}: the model at {model_dir} has heads "
            f"{', '.join(info.heads)}; ask for those"
        )
    models = {
        task: TaskModel(
            version=info.version,
            labels=info.heads[task].labels,
            languages=tuple(info.languages),
            max_length=int(max_length or info.max_length),
            model_dir=str(model_dir),
            breakdown_method=info.heads[task].breakdown_method,
            adjustment=info.heads[task].adjustment,
            counting=info.heads[task].counting,
        )
        for task in chosen
    }
    default = DEFAULT_TASK if DEFAULT_TASK in models else chosen[0]
    return ServedModels(default, models)


def local_scorer(predictor: OnnxPredictor, tasks: Sequence[str]) -> Scorer:
    """The ONNX predictor in this process: one encoder pass answers every head."""

    def score(texts: Sequence[str]) -> Mapping[str, np.ndarray]:
        probs = predictor.probabilities_all(texts)
        return {t: probs[t] for t in tasks}

    return score


class Hygiene:
    """Which rows are worth scoring: an empty row never is; with `dedupe`, the service's
    post hygiene (`PostFilter`: exact repeats count once)."""

    def __init__(self, dedupe: bool) -> None:
        self.filter = PostFilter(include_nsfw=True) if dedupe else None
        self.empty = 0

    def admit(self, post: Post) -> Post | None:
        if self.filter is not None:
            return self.filter.admit(post)
        body = clean_body(post.body)
        if not post.title.strip() and not body.strip():
            self.empty += 1
            return None
        return post if body == post.body else dataclasses.replace(post, body=body)

    def counts(self) -> dict[str, int]:
        if self.filter is not None:
            return self.filter.counts()
        return {"empty": self.empty} if self.empty else {}


def with_languages(posts: Sequence[Post], min_confidence: float) -> list[Post]:
    """Each post with its detected language, as the Fetcher adds it."""
    from serve_app.model.preprocess import post_text

    found = detect([post_text(p.title, p.body) for p in posts], min_confidence)
    return [
        dataclasses.replace(p, lang=d.lang, lang_confidence=d.confidence)
        for p, d in zip(posts, found, strict=True)
    ]


class StoredRows(Mapping[str, PredictionRows]):
    """Each task's rows, read from the store when asked (the counting reads one task at a
    time, so one task's matrix is in memory at once)."""

    def __init__(self, store: ProbabilityStore, labels: Mapping[str, Sequence[str]]) -> None:
        self.store, self.labels = store, labels

    def __getitem__(self, task: str) -> PredictionRows:
        return PredictionRows(self.store.matrix(task), self.labels[task])

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, task: object) -> bool:  # without reading the matrix
        return task in self.labels


class FileTally:
    """What is kept of the texts already read: counts, the strongly negative texts (id and
    confidence) and, on disk, every scored text's probabilities; the answer is made from it
    at the end."""

    def __init__(self, models: ServedModels, q: Question, sinks: Sequence[TextSink] = ()) -> None:
        self.models, self.q, self.sinks = models, q, list(sinks)
        self.count = 0  # rows admitted (the service's `count`: posts fetched after hygiene)
        self.langs: collections.Counter[str] = collections.Counter()
        self.language_excluded = 0
        self.labels = {t: models.tasks[t].labels for t in q.tasks}
        self.store = ProbabilityStore({t: len(labels) for t, labels in self.labels.items()})
        # Only the hits of the triage are kept (the answer lists them), not every text's id.
        self.negative: list[tuple[float, str]] = []

    @property
    def scored(self) -> int:
        return self.store.rows

    def add(self, posts: Sequence[Post], sel: Selection, probs: Mapping[str, np.ndarray]) -> None:
        self.count += len(posts)
        self.langs.update(sel.langs)
        self.language_excluded += sel.excluded.get("language", 0)
        kept = [posts[i] for i in sel.keep]
        self.store.append({t: probs[t] for t in self.q.tasks})
        if not kept:
            return
        preds = {t: PredictionRows(probs[t], self.labels[t]) for t in self.q.tasks}
        if TRIAGE_TASK in preds:
            label = TASKS[TRIAGE_TASK].triage_label or ""
            ids = [p.id for p in kept]
            self.negative += negative_hits(ids, preds[TRIAGE_TASK], self.q.negative_threshold, label)
        for sink in self.sinks:
            sink.add(kept, preds)

    def predictions(self) -> StoredRows:
        return StoredRows(self.store, self.labels)

    def analysis(self, name: str, hygiene: Mapping[str, int]) -> Analysis:
        """The answer, as `serve_app.flow.analysis.build_analysis` makes it for `/analyze`."""
        q, models = self.q, self.models
        preds = self.predictions()
        # As AnalysisFlow._compute: the artifact's full fit, else its method and matrix.
        specs = {t: models.tasks[t] for t in q.tasks}
        counting = {t: m.counting or Counting(m.breakdown_method, m.adjustment) for t, m in specs.items()}
        summary = summarize(name, preds, False, counting)
        negative = None
        if TRIAGE_TASK in preds:
            negative = triage_row(self.negative, self.scored, q.negative_threshold)
        versions = models.versions(q.tasks)
        # `language` as select_posts counts it; `not_counted` never applies (a file has no comments).
        excluded = {"language": self.language_excluded, **hygiene}
        extra: dict[str, object] = {}
        for sink in self.sinks:
            extra.update(sink.answer_fields())
        return Analysis.model_validate(
            {
                **summary.breakdowns,
                **extra,
                "keyword": name,
                "count": self.count,
                "breakdown_methods": {t: c.method for t, c in counting.items()},
                "strongly_negative": negative,
                "tasks": list(q.tasks),
                "scored": self.scored,
                "languages": count_languages(self.langs.elements()),
                "excluded": self.language_excluded,
                "excluded_reasons": {reason: n for reason, n in excluded.items() if n},
                "newly_scored": self.scored,
                "partial": False,
                "partial_reason": None,
                "model_versions": versions,
                "plot_base64": None,
                "net_sentiment": summary.net_sentiment,
                "post_source": POST_SOURCE,
                "model_version": versions.get(DEFAULT_TASK) or next(iter(versions.values())),
            }
        )


def question(models: ServedModels, opts: FileOptions, name: str) -> Question:
    return Question(
        name, 0, POST_SOURCE, tuple(models.tasks), opts.negative_threshold, opts.lang,
        opts.include_other_languages,
    )  # fmt: skip


def analyze_posts(
    chunks: Iterable[Sequence[Post]],
    models: ServedModels,
    score: Scorer,
    opts: FileOptions,
    name: str,
    sinks: Sequence[TextSink] = (),
) -> Analysis:
    """Stream chunks of posts through hygiene, language selection and the scorer, then count."""
    q = question(models, opts, name)
    hygiene = Hygiene(opts.dedupe)
    tally = FileTally(models, q, sinks)
    try:
        for chunk in chunks:
            admitted = [p for p in (hygiene.admit(post) for post in chunk) if p is not None]
            posts = with_languages(admitted, opts.lang_min_confidence)
            sel = select_posts(FetchResult(posts), models, q)
            if sel.texts:
                probs = score(sel.texts)
            else:
                probs = {t: np.zeros((0, len(models.tasks[t].labels)), dtype=np.float32) for t in q.tasks}
            tally.add(posts, sel, probs)
        return tally.analysis(name, hygiene.counts())
    finally:
        tally.store.close()


class InsightSink:
    """Drivers and representative texts per label, streamed: the builder the Aggregator's
    `describe` uses (serve_app.explain.insights), fed a chunk at a time; its memory is bounded
    (a pruned term table per task, a few hundred texts kept per label)."""

    def __init__(self, tasks: Sequence[str], keyword: str = "", max_terms: int = FILE_MAX_TERMS) -> None:
        self.builder = InsightBuilder(keyword, list(tasks), max_terms=max_terms)

    def add(self, posts: Sequence[Post], preds: Mapping[str, Sequence[PredictionRow]]) -> None:
        self.builder.add(posts, preds)

    def answer_fields(self) -> Mapping[str, object]:
        found = self.builder.result()
        return {"drivers": found.drivers, "representatives": found.representatives}


def default_sinks(models: ServedModels, opts: FileOptions) -> list[TextSink]:
    """The per-text extras of every analysis: drivers and representative texts (no keyword:
    a file's texts were not searched for one, so no term is left out as the query)."""
    return [InsightSink(list(models.tasks))]


def analyze_file(
    path: Path,
    fields: TextFields,
    model_dir: Path,
    opts: FileOptions = FileOptions(),
    max_length: int | None = 128,
    chunk_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    scorer: Callable[[ServedModels], Scorer] | None = None,
    threads: int = 2,
    batch_size: int = 32,
) -> Analysis:
    """The analysis of the texts in `path`, scored here (or by `scorer(models)`: a Ray cluster)."""
    models = served_models(model_dir, max_length, opts.tasks)
    if scorer is not None:
        score = scorer(models)
    else:
        predictor = OnnxPredictor(model_dir, threads=threads, max_length=max_length, batch_size=batch_size)
        score = local_scorer(predictor, list(models.tasks))
    chunks = read_posts(path, fields, chunk_size, progress)
    return analyze_posts(chunks, models, score, opts, path.name, default_sinks(models, opts))
