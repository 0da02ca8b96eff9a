"""The cheaper insights (issue 26's cost target) give the same answers as the plain code: the
chunk counting equals counting post by post, the interval equals numpy's percentile to the
bit, MMR equals its textbook loop, and the per-process caches (posts' term sets, posts'
languages) answer what a fresh computation answers, within their bound."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from serve_app.counting.quantify import Counting
from serve_app.domain.posts import Post
from serve_app.domain.records import PredictionRow
from serve_app.domain.tasks import TASKS
from serve_app.explain.drivers import TermTable, _interval
from serve_app.explain.insights import InsightBuilder, describe
from serve_app.explain.representatives import Candidate, KeptPosts, _jaccard, pick
from serve_app.explain.terms import TermSets, post_terms
from serve_app.flow.aggregate import aggregate_quantified
from serve_app.flow.file_analysis import PredictionRows
from serve_app.model.language import SeenLanguages, detect
from tests.unit.test_insights import corpus

pytestmark = pytest.mark.unit


def test_the_interval_is_numpys_percentile_to_the_last_bit() -> None:
    rng = np.random.default_rng(7)
    for i in range(3000):
        n = int(rng.integers(1, 420))
        k = int(rng.integers(1, 50))
        values = (
            rng.integers(-k, k + 1, size=n) / rng.integers(1, k + 1, size=n) if i % 2 else rng.normal(size=n)
        )
        assert _interval(values) == tuple(float(x) for x in np.percentile(values, [2.5, 97.5]))


def test_counting_a_chunk_at_once_equals_counting_post_by_post() -> None:
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(60)]
    labels = [rng.choice(["joy", "anger", "neutral"]) for _ in range(400)]
    terms = [frozenset(rng.sample(vocab, rng.randint(0, 8))) for _ in labels]
    polar = [rng.choice(["positive", "negative", "neutral", None]) for _ in labels]
    one, chunked = TermTable(), TermTable()
    for lab, ts, p in zip(labels, terms, polar, strict=True):
        one.add(lab, ts, p)
    for k in range(0, 400, 90):  # the second chunk onwards adds to counters already full
        chunked.add_posts(labels[k : k + 90], terms[k : k + 90], polar[k : k + 90])
    for a, b in ((one.posts, chunked.posts), (one.total, chunked.total), (one.positive, chunked.positive),
                 (one.negative, chunked.negative)):  # fmt: skip
        assert list(a.items()) == list(b.items())  # the same counts in the same order (ties)
    assert {k: list(v.items()) for k, v in one.df.items()} == {
        k: list(v.items()) for k, v in chunked.df.items()
    }
    assert one.polar and chunked.polar


def _mmr_reference(kept: KeptPosts, weights: dict[str, float], k: int = 3, lam: float = 0.7) -> list[str]:
    """Maximal marginal relevance as first written: every overlap recomputed each round."""
    cands = kept.best_first()[:30]
    close = [sum(weights.get(t, 0.0) for t in c.terms) / math.sqrt(len(c.terms) + 1) for c in cands]
    top = max(close) or 1.0
    rel = [0.5 * c.confidence + 0.5 * (x / top) for c, x in zip(cands, close, strict=True)]
    chosen: list[int] = []
    while len(chosen) < min(k, len(cands)):
        scores = {
            i: lam * rel[i]
            - (1 - lam) * max((_jaccard(cands[i].terms, cands[j].terms) for j in chosen), default=0.0)
            for i in range(len(cands))
            if i not in chosen
        }
        chosen.append(max(scores, key=lambda i: (scores[i], -i)))
    return [cands[i].id for i in chosen]


def test_mmr_with_running_overlaps_picks_what_the_textbook_loop_picks() -> None:
    rng = random.Random(11)
    vocab = [f"t{i}" for i in range(25)]
    for _ in range(200):
        kept = KeptPosts(40)
        for i in range(rng.randint(1, 40)):
            ts = frozenset(rng.sample(vocab, rng.randint(1, 6)))
            c = Candidate(round(rng.random(), 3), f"p{i}", "", "", 0.0, "", ts)
            kept.offer(c.confidence, lambda c=c: c)  # type: ignore[misc]
        weights = {t: rng.random() * 3 for t in rng.sample(vocab, 8)}
        assert [c.id for c in pick(kept, weights)] == _mmr_reference(kept, weights)


def test_term_sets_are_remembered_by_post_and_text_within_a_bound() -> None:
    sets = TermSets(capacity=2)
    first = sets.get("a", "Battery life is awful", frozenset())
    assert first == frozenset(post_terms("Battery life is awful"))
    assert sets.get("a", "Battery life is awful", frozenset()) is first  # remembered
    assert sets.get("a", "Battery life is great", frozenset()) == post_terms(
        "Battery life is great"
    )  # edited
    assert "battery" not in sets.get("a", "Battery life is awful", frozenset({"battery"}))  # another keyword
    assert len(sets._sets) == 2


def test_describe_with_remembered_terms_answers_as_a_fresh_builder() -> None:
    posts, preds = corpus(300, seed=4)
    fresh = InsightBuilder("gadget", list(preds), keep=len(posts))  # no cache
    fresh.add(posts, preds)
    want = fresh.result()
    for _ in range(2):  # the second call reads every post's terms from the process's cache
        got = describe("gadget", posts, preds)
        assert got.drivers == want.drivers and got.representatives == want.representatives


def test_seen_languages_answer_as_detect_and_stay_bounded() -> None:
    texts = ["This is clearly an English sentence about the weather today.",
             "Das ist eindeutig ein deutscher Satz über das Wetter heute.", "", "ok"]  # fmt: skip
    seen = SeenLanguages(capacity=3)
    ids = [f"p{i}" for i in range(len(texts))]
    for threshold in (0.8, 0.99, 0.8):  # the threshold applies on every call, cached or not
        assert seen.detect(ids, texts, threshold) == detect(texts, threshold)
    assert len(seen._seen) == 3
    assert seen.detect(["p0"], ["Ceci est clairement une phrase en français sur le temps."]) == detect(
        ["Ceci est clairement une phrase en français sur le temps."]
    )  # the same id with another text is detected again


def test_a_streams_term_table_stays_within_its_bound_and_keeps_the_drivers() -> None:
    """The file analysis's bound (FILE_MAX_TERMS, 1.25x before a prune): most of a long
    file's terms are in one text each; the table must not grow with them, and a phrase
    frequent in one label must survive every prune as that label's driver."""
    rng = random.Random(2)
    builder = InsightBuilder("", ["emotion"], keep=20, max_terms=400)
    emotions = ("sadness", "joy", "anger", "neutral")
    sizes = []
    for chunk in range(30):
        posts: list[Post] = []
        rows: list[PredictionRow] = []
        for i in range(100):
            label = emotions[(chunk * 100 + i) % 4]
            words = " ".join(f"w{rng.randrange(10**6)}" for _ in range(6))  # new terms, mostly
            text = f"{words}. battery drain again" if label == "anger" and rng.random() < 0.3 else words
            posts.append(Post(f"p{chunk}-{i}", "", text, "s", 0.0, 1, ""))
            rows.append(
                {"label": label, "confidence": 0.9, "scores": {e: 0.1 for e in emotions} | {label: 0.9}}
            )
        builder.add(posts, {"emotion": rows})
        sizes.append(len(builder.tables["emotion"].total))
    assert max(sizes) <= 500 and sizes[-1] >= 400
    anger = [d["term"] for d in builder.result().drivers["emotion"]["anger"]]
    assert "battery drain" in anger[:3]


@pytest.mark.parametrize("method", ["cc", "pcc"])
def test_a_files_rows_are_counted_from_their_own_matrix_with_the_same_numbers(method: str) -> None:
    rng = np.random.default_rng(3)
    labels = TASKS["emotion"].labels
    rows = PredictionRows(rng.dirichlet(np.ones(len(labels)), size=300).astype(np.float32), labels)
    from_matrix = aggregate_quantified(rows, TASKS["emotion"], Counting(method))[0]
    assert from_matrix == aggregate_quantified(list(rows), TASKS["emotion"], Counting(method))[0]
