"""Drivers: the terms most distinctive of the posts carrying a label, against the rest of the
same analysis; and emerging terms: those that rose in a spiking bucket against the baseline.

The statistic is the weighted log-odds ratio with an informative Dirichlet prior (Monroe,
Colaresi and Quinn 2008, "Fightin' Words", section 3.5), on document frequencies (a post
counts a term once, so one long rant cannot make a driver): for a term in y_i of the label's
n_i posts and y_j of the other n_j posts, with a prior of a = a0 * p posts (p: the term's
rate over the whole analysis, a0 = `Params.prior_share` x its posts),

    delta = log((y_i + a) / (n_i + a0 - y_i - a)) - log((y_j + a) / (n_j + a0 - y_j - a))
    z = delta / sqrt(1/(y_i + a) + 1/(n_i + a0 - y_i - a) + 1/(y_j + a) + 1/(n_j + a0 - y_j - a))

The prior shrinks rare terms towards "no difference", so a word seen in 3 posts of a small
label needs a clear contrast to pass. A driver keeps z >= `Params.z_min` in at least
`Params.min_posts` of the label's posts; a label needs `Params.min_label_posts` posts, and so
do the rest (a contrast needs both sides).

Counting is mergeable: a `TermTable` per chunk of posts, added together, holds everything
the statistic and the terms' sentiment need, so a file of any length streams through with
memory bounded by `TermTable.prune`.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, compress, repeat
from operator import ge

import numpy as np

from serve_app.domain.records import EmergingTermRow, NetSentimentRow
from serve_app.explain.terms import keyword_words, post_terms

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Params:
    z_min: float = Z95  # two-sided 5 %: only the positive side makes a driver
    min_posts: int = 3  # posts of the label containing the term
    min_label_posts: int = 5  # posts a label (and the rest) needs before it gets drivers
    # a0 = prior_share x the analysis's posts: the prior's weight. Chosen on the GoEmotions
    # train split with planted phrases (tests/unit/test_drivers.py runs on validation): a0 = 10
    # missed a third of 15 % plants in anger's posts at 1,000 texts (a term absent from the
    # rest keeps a huge variance); a0 = 1,000 found no 20 % plant at 250; 0.1 n let 4.5 % of
    # even phrases through at 250; 0.25 n found every 15 % plant at 1,000 with <= 1 % false.
    prior_share: float = 0.25
    max_terms: int = 10  # drivers kept per label, highest z first
    # A unigram is left out when a kept bigram holding it covers this share of its posts
    # ("battery" under "battery life"): the phrase says more.
    covered: float = 0.8
    bootstrap: int = 400  # resamples for a driver's net sentiment interval


@dataclass(frozen=True)
class Scored:
    """One term's contrast in one label."""

    term: str
    z: float
    posts: int  # the label's posts containing it
    share: float  # % of the label's posts
    # The term's own sentiment: of every post of the analysis containing it (`mentions`),
    # those the sentiment head calls positive and negative.
    mentions: int
    positive: int
    negative: int


@dataclass(frozen=True)
class ChunkCounts:
    """Posts per term over some posts, and among those called positive and negative."""

    total: Counter[str]
    positive: Counter[str]
    negative: Counter[str]
    polar: bool

    @staticmethod
    def of(terms: Sequence[Iterable[str]], polarity: Sequence[str | None] | None) -> ChunkCounts:
        pos: Counter[str] = Counter()
        neg: Counter[str] = Counter()
        polar = polarity is not None and any(p is not None for p in polarity)
        if polarity is not None:
            pairs = list(zip(terms, polarity, strict=True))
            pos.update(chain.from_iterable(t for t, p in pairs if p == "positive"))
            neg.update(chain.from_iterable(t for t, p in pairs if p == "negative"))
        return ChunkCounts(Counter(chain.from_iterable(terms)), pos, neg, polar)


@dataclass
class TermTable:
    """Document frequencies per label (and the terms' sentiment counts), mergeable with `merge`."""

    posts: Counter[str] = field(default_factory=Counter)  # label -> posts
    df: dict[str, Counter[str]] = field(default_factory=dict)  # label -> term -> posts with it
    positive: Counter[str] = field(default_factory=Counter)  # term -> posts called positive
    negative: Counter[str] = field(default_factory=Counter)  # term -> posts called negative
    polar: bool = False  # sentiment labels were given: drivers carry net sentiment
    total: Counter[str] = field(default_factory=Counter)  # term -> posts with it, any label

    def add(self, label: str, terms: Iterable[str], polarity: str | None = None) -> None:
        """One post: its label, its terms (a set), and its sentiment label if known."""
        self.posts[label] += 1
        self.df.setdefault(label, Counter()).update(terms)
        self.total.update(terms)  # kept as it goes: summing the labels' counters is slow
        if polarity is not None:
            self.polar = True
            if polarity in ("positive", "negative"):
                (self.positive if polarity == "positive" else self.negative).update(terms)

    def add_posts(
        self,
        labels: Sequence[str],
        terms: Sequence[Iterable[str]],
        polarity: Sequence[str | None] | None,
        shared: ChunkCounts | None = None,
    ) -> None:
        """Many posts at once: the same counts as `add` per post, in the same order, with one
        C-level count per label instead of a Python call per post and counter. `shared`:
        the posts' label-free counts (`ChunkCounts.of` the same posts), made once for all
        the tasks' tables."""
        by_label: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        for label, idx in by_label.items():
            self.posts[label] += len(idx)
            self.df.setdefault(label, Counter()).update(chain.from_iterable(terms[i] for i in idx))
        shared = shared or ChunkCounts.of(terms, polarity)
        for mine, theirs in ((self.total, shared.total), (self.positive, shared.positive),
                             (self.negative, shared.negative)):  # fmt: skip
            # Into an empty counter a copy (C); into a full one a C-level recount of the
            # posts beats Counter's Python loop over a mapping.
            if mine:
                mine.update(theirs.elements())
            else:
                mine.update(theirs)
        self.polar = self.polar or shared.polar

    def merge(self, other: TermTable) -> TermTable:
        """Add another table's counts into this one (chunks of a stream, parallel workers)."""
        self.posts.update(other.posts)
        for label, counts in other.df.items():
            self.df.setdefault(label, Counter()).update(counts)
        self.positive.update(other.positive)
        self.negative.update(other.negative)
        self.total.update(other.total)
        self.polar = self.polar or other.polar
        return self

    def totals(self) -> Counter[str]:
        return self.total

    def prune(self, max_terms: int) -> int:
        """Keep the `max_terms` terms seen in most posts (ties: the first seen); the number
        dropped. A dropped term was rarer than every kept one, so with `max_terms` well above
        the terms a stream can make drivers of, the drivers do not change."""
        totals = self.total
        if len(totals) <= max_terms:
            return 0
        # A stable sort of the counts (numpy) and deletions of the few dropped: a stream
        # prunes often, and rebuilding every counter cost more than the counting.
        terms = list(totals)
        counts = np.fromiter(totals.values(), dtype=np.int64, count=len(terms))
        drop = [terms[i] for i in np.argsort(-counts, kind="stable")[max_terms:].tolist()]
        for counter in (self.total, self.positive, self.negative, *self.df.values()):
            for t in drop:
                counter.pop(t, None)
        # Copies (C) give the deleted slots back: a dict never shrinks on deletion.
        self.total, self.positive = Counter(self.total), Counter(self.positive)
        self.negative = Counter(self.negative)
        self.df = {label: Counter(c) for label, c in self.df.items()}
        return len(drop)


def log_odds_z(
    y_i: np.ndarray, n_i: float, y_j: np.ndarray, n_j: float, rate: np.ndarray, a0: float
) -> np.ndarray:
    """z of the weighted log-odds ratio with an informative Dirichlet prior (module docstring)."""
    a = a0 * rate
    in_i, out_i = y_i + a, n_i + a0 - y_i - a
    in_j, out_j = y_j + a, n_j + a0 - y_j - a
    # A term in every post (out_* = 0) distinguishes nothing: z 0, not a division by zero.
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log(in_i / out_i) - np.log(in_j / out_j)
        z = delta / np.sqrt(1 / in_i + 1 / out_i + 1 / in_j + 1 / out_j)
    out: np.ndarray = np.where(np.isfinite(z), z, 0.0)
    return out


def frequent(table: TermTable, params: Params = Params()) -> list[str]:
    """The terms in enough posts to be anyone's driver (most terms are in one post)."""
    # compress/map run in C: the table holds every term of every post (tens of thousands).
    total = table.total
    return list(compress(total.keys(), map(ge, total.values(), repeat(params.min_posts))))


def contrast(
    table: TermTable, label: str, params: Params = Params(), vocab: Sequence[str] | None = None
) -> list[Scored]:
    """Every term distinctive of `label` (z >= z_min, in >= min_posts of its posts), highest
    z first. `vocab`: `frequent(table)`, when several labels of one table are asked."""
    n_i = table.posts.get(label, 0)
    n = sum(table.posts.values())
    if n_i < params.min_label_posts or n - n_i < params.min_label_posts:
        return []
    counts = table.df.get(label, Counter())
    vocab = frequent(table, params) if vocab is None else vocab
    # The label's count of every vocabulary term, looked up in C (map over dict.get).
    in_label = np.fromiter(map(counts.get, vocab, repeat(0)), dtype=float, count=len(vocab))
    idx = np.flatnonzero(in_label >= params.min_posts)
    if not len(idx):
        return []
    terms = [vocab[k] for k in idx.tolist()]
    y_i = in_label[idx]
    y_all = np.fromiter(map(table.total.__getitem__, terms), dtype=float, count=len(terms))
    z = log_odds_z(y_i, n_i, y_all - y_i, n - n_i, y_all / n, params.prior_share * n)
    pos, neg = table.positive, table.negative
    order = np.argsort(-z, kind="stable")
    order = order[z[order] >= params.z_min]  # Scored rows for the kept terms only
    zs, ys, alls = z.tolist(), y_i.tolist(), y_all.tolist()
    return [
        Scored(terms[k], zs[k], int(ys[k]), 100.0 * ys[k] / n_i, int(alls[k]), pos[terms[k]], neg[terms[k]])
        for k in order.tolist()
    ]


def _covered(term: str, kept: Sequence[Scored], posts: int, share: float) -> bool:
    return any(" " in k.term and term in k.term.split(" ") and k.posts >= share * posts for k in kept)


def top_terms(scored: Sequence[Scored], params: Params = Params()) -> list[Scored]:
    """The `max_terms` highest, leaving out a unigram a kept or stronger bigram covers."""
    bigrams = [s for s in scored if " " in s.term]
    out: list[Scored] = []
    for s in scored:
        if " " not in s.term and _covered(s.term, bigrams, s.posts, params.covered):
            continue
        out.append(s)
        if len(out) >= params.max_terms:
            break
    return out


_TAILS = np.array([2.5, 97.5]) / 100


def _interval(values: np.ndarray) -> tuple[float, float]:
    """np.percentile(values, [2.5, 97.5]) (its default, linear method, the same arithmetic to
    the last bit: tests/unit/test_drivers.py checks), without its generic machinery, which
    cost more than the draws: an analysis asks for one per driver."""
    a = np.sort(values)
    virtual = (len(a) - 1) * _TAILS
    below = np.floor(virtual).astype(np.intp)
    lo, hi = a[below], a[np.minimum(below + 1, len(a) - 1)]
    gamma = virtual - below
    diff = hi - lo
    out = np.where(gamma >= 0.5, hi - diff * (1 - gamma), lo + diff * gamma)
    return float(out[0]), float(out[1])


def net_sentiment(positive: int, negative: int, posts: int, draws: int, seed: str) -> NetSentimentRow | None:
    """(positive - negative) / (positive + negative) over the posts, with a 95 % bootstrap
    interval (posts resampled: a multinomial over their sentiment labels). None when none
    of the posts is positive or negative."""
    if positive + negative == 0 or posts <= 0:
        return None
    rng = np.random.default_rng(zlib.crc32(seed.encode("utf-8")))
    p = np.array([positive, negative, posts - positive - negative], dtype=float) / posts
    sample = rng.multinomial(posts, p, size=draws)
    polar = sample[:, 0] + sample[:, 1]
    values = (sample[:, 0] - sample[:, 1])[polar > 0] / polar[polar > 0]
    value = (positive - negative) / (positive + negative)
    low, high = _interval(values) if len(values) else (value, value)
    return {
        "value": round(value, 4),
        "low": round(min(value, float(low)), 4),
        "high": round(max(value, float(high)), 4),
    }


def drivers(table: TermTable, params: Params = Params()) -> dict[str, list[Scored]]:
    """Each label's drivers (labels with too few posts, or no distinctive term, are left out)."""
    vocab = frequent(table, params)
    out = {}
    for label in table.posts:
        kept = top_terms(contrast(table, label, params, vocab), params)
        if kept:
            out[label] = kept
    return out


def emerging_terms(
    bucket: Sequence[str], baseline: Sequence[str], keyword: str, params: Params = Params(), top: int = 8
) -> list[EmergingTermRow]:
    """The terms whose share of posts rose most in the bucket against the baseline (the same
    statistic: the bucket's posts are the label, the baseline's the rest)."""
    banned = keyword_words(keyword)
    table = TermTable()
    for name, texts in (("bucket", bucket), ("baseline", baseline)):
        for text in texts:
            table.add(name, post_terms(text, banned))
    kept = top_terms(contrast(table, "bucket", params), replace(params, max_terms=top))
    return [{"term": s.term, "z": round(s.z, 3), "posts": s.posts} for s in kept]


def driver_table(
    labels: Sequence[str], terms: Sequence[set[str]], polarity: Sequence[str | None] | None = None
) -> TermTable:
    """A table of posts given as (label, term set, sentiment label or None)."""
    table = TermTable()
    for i, (label, ts) in enumerate(zip(labels, terms, strict=True)):
        table.add(label, ts, None if polarity is None else polarity[i])
    return table
