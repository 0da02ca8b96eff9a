"""Drivers and representative posts of an analysis: the one code path behind the Aggregator
(`/analyze`), and the file analysis, which streams chunks through the same builder.

`InsightBuilder.add` takes a chunk of posts with each task's predictions for them (a post's
label is its top label); `merge` adds another builder (parallel workers); `result` gives,
per task and label, the drivers (serve_app.explain.drivers) and three representative posts
(serve_app.explain.representatives). Memory: a `TermTable` per task (pruned past `max_terms`) and at
most `keep` posts per label, whatever the number of posts added.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from serve_app.domain.posts import Post
from serve_app.domain.records import Drivers, DriverTermRow, NetSentimentRow, PredictionRow, Representatives
from serve_app.domain.tasks import TASKS
from serve_app.explain.drivers import (
    ChunkCounts,
    Params,
    Scored,
    TermTable,
    contrast,
    frequent,
    net_sentiment,
    top_terms,
)
from serve_app.explain.representatives import Candidate, KeptPosts, head, pick
from serve_app.explain.terms import TermSets, keyword_words, post_terms
from serve_app.model.preprocess import post_text

# The task whose labels give a driver's net sentiment (positive against negative).
SENTIMENT_TASK = "sentiment"
MAX_POST_IDS = 50  # a driver's post ids, most confident first
# Term sets of the posts this process analysed lately: ~6 KB each, so ~30 MB at most.
SEEN_POSTS = TermSets(5000)


@dataclass(frozen=True)
class Insights:
    drivers: Drivers
    representatives: Representatives


class InsightBuilder:
    def __init__(
        self,
        keyword: str,
        tasks: Sequence[str],
        keep: int = 200,
        params: Params = Params(),
        max_terms: int = 200_000,
        term_sets: TermSets | None = None,
    ) -> None:
        """`keep`: posts kept per label (representatives are chosen among them, and a
        driver's post ids come from them: give the number of posts for exact ids).
        `term_sets`: a cache of posts' term sets, for posts seen again (the service's)."""
        self.keyword, self.keep, self.params, self.max_terms = keyword, keep, params, max_terms
        self.term_sets = term_sets
        self.banned = keyword_words(keyword)
        self.tables = {t: TermTable() for t in tasks}
        self.kept: dict[str, dict[str, KeptPosts]] = {t: {} for t in tasks}

    def add(self, posts: Sequence[Post], preds: Mapping[str, Sequence[PredictionRow]]) -> None:
        """A chunk of posts and each task's prediction rows for them (same order)."""
        texts = [post_text(p.title, p.body) for p in posts]
        # Tokenised once for every task (and, with `term_sets`, once per post across analyses).
        sets = self.term_sets
        terms = (
            [sets.get(p.id, t, self.banned) for p, t in zip(posts, texts, strict=True)]
            if sets is not None
            else [frozenset(post_terms(t, self.banned)) for t in texts]
        )
        # Rows read once (a file's rows are made as they are read).
        lists = {t: list(rows) for t, rows in preds.items() if t in self.tables or t == SENTIMENT_TASK}
        polar_rows = lists.get(SENTIMENT_TASK)
        polar = [r["label"] for r in polar_rows] if polar_rows is not None else None
        shared = ChunkCounts.of(terms, polar)  # the same in every task's table: counted once
        for task, rows in lists.items():
            if task not in self.tables:
                continue
            table, kept = self.tables[task], self.kept[task]
            table.add_posts([r["label"] for r in rows], terms, polar, shared)
            for i, row in enumerate(rows):
                label, conf = row["label"], float(row["confidence"])
                slot = kept.get(label) or kept.setdefault(label, KeptPosts(self.keep))
                if slot.wants(conf):
                    p = posts[i]
                    slot.offer(
                        conf,
                        lambda p=p, c=conf, t=terms[i], x=texts[i]: Candidate(  # type: ignore[misc]
                            c, p.id, p.url, p.subreddit, float(p.created_utc), head(x), t
                        ),
                    )
            # A quarter over the bound, not double it: the peak is what memory is sized by.
            if len(table.total) > self.max_terms + self.max_terms // 4:
                table.prune(self.max_terms)
                _give_back_freed_memory()

    def merge(self, other: InsightBuilder) -> InsightBuilder:
        for task, table in other.tables.items():
            self.tables.setdefault(task, TermTable()).merge(table)
            for label, slot in other.kept.get(task, {}).items():
                mine = self.kept.setdefault(task, {}).setdefault(label, KeptPosts(self.keep))
                mine.merge(slot)
        return self

    def result(self) -> Insights:
        drivers: Drivers = {}
        reps: Representatives = {}
        # A term's sentiment is the same in every task's table (the same posts): its
        # bootstrap interval is drawn once (the seed is the term: the same draws anyway).
        nets: dict[tuple[str, int, int, int], NetSentimentRow | None] = {}
        for task, table in self.tables.items():
            vocab = frequent(table, self.params)
            drivers[task], reps[task] = {}, {}
            for label in TASKS[task].labels if task in TASKS else sorted(table.posts):
                scored = contrast(table, label, self.params, vocab)
                kept = self.kept[task].get(label, KeptPosts(0))
                ordered = kept.best_first()
                rows = [self._row(s, ordered, table.polar, nets) for s in top_terms(scored, self.params)]
                drivers[task][label] = rows
                weights = {s.term: s.z for s in scored} or dict(table.df.get(label, {}))
                reps[task][label] = [c.row() for c in pick(kept, weights)]
        return Insights(drivers, reps)

    def _row(
        self,
        s: Scored,
        ordered: Sequence[Candidate],
        polar: bool,
        nets: dict[tuple[str, int, int, int], NetSentimentRow | None],
    ) -> DriverTermRow:
        ids = [c.id for c in islice((c for c in ordered if s.term in c.terms), MAX_POST_IDS)]
        net = None
        if polar:
            key = (s.term, s.positive, s.negative, s.mentions)
            if key not in nets:
                nets[key] = net_sentiment(s.positive, s.negative, s.mentions, self.params.bootstrap, s.term)
            net = nets[key]
        return {
            "term": s.term,
            "z": round(s.z, 3),
            "posts": s.posts,
            "share": round(s.share, 2),
            "post_ids": ids,
            "net_sentiment": net,
        }


def describe(
    keyword: str,
    posts: Sequence[Post],
    preds: Mapping[str, Sequence[PredictionRow]],
    params: Params = Params(),
) -> Insights:
    """Drivers and representative posts of one analysis held in memory (every post kept)."""
    builder = InsightBuilder(
        keyword, list(preds), keep=max(1, len(posts)), params=params, term_sets=SEEN_POSTS
    )
    builder.add(posts, preds)
    return builder.result()


def _give_back_freed_memory() -> None:
    """Return the pruned terms' freed heap to the OS (glibc keeps it, so a long file's peak
    RSS crept up with every prune); a no-op where there is no glibc."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if isinstance(_LIBC, ctypes.CDLL):
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | bool | None = None
