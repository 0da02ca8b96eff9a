"""Drivers and representative posts of an analysis (serve_app.explain.insights, .representatives), pure:
the Aggregator's path, a stream of chunks, and the answers' edge cases."""

from __future__ import annotations

import random
from functools import partial

import pytest

from serve_app.domain.posts import Post
from serve_app.domain.records import PredictionRow
from serve_app.domain.schemas import Analysis, DriverRow, RepresentativePost
from serve_app.explain.insights import InsightBuilder, describe
from serve_app.explain.representatives import SNIPPET_CHARS, Candidate, KeptPosts, pick, snippet
from serve_app.flow.aggregate import summarize

pytestmark = pytest.mark.unit

TOPICS = {
    "anger": ["the refund policy is a scam", "customer support never answers", "refund policy again"],
    "joy": ["the new camera is amazing", "battery life is amazing now", "love the camera update"],
    "neutral": ["it ships on monday", "the store opens at nine", "which model should i buy"],
}
SENTIMENT = {"anger": "negative", "joy": "positive", "neutral": "neutral"}


def _row(label: str, confidence: float, labels: tuple[str, ...]) -> PredictionRow:
    rest = (1 - confidence) / (len(labels) - 1)
    return {
        "label": label,
        "confidence": confidence,
        "scores": {x: confidence if x == label else rest for x in labels},
    }


def corpus(n: int, seed: int = 0) -> tuple[list[Post], dict[str, list[PredictionRow]]]:
    rng = random.Random(seed)
    posts, emo, sen = [], [], []
    emotions = ("sadness", "joy", "love", "anger", "fear", "surprise", "neutral")
    for i in range(n):
        label = rng.choice(list(TOPICS))
        text = (
            rng.choice(TOPICS[label])
            + f" with the Gadget, note {rng.randint(0, 10**6)} {rng.choice(['ok', 'hm'])}"
        )
        posts.append(Post(f"p{i}", f"Gadget thoughts {i}", text, "gadgets", 1.7e9 + i, 1, f"https://r/p{i}"))
        emo.append(_row(label, round(rng.uniform(0.4, 0.99), 3), emotions))
        sen.append(
            _row(SENTIMENT[label], round(rng.uniform(0.4, 0.99), 3), ("negative", "neutral", "positive"))
        )
    return posts, {"emotion": emo, "sentiment": sen}


def test_describe_finds_each_labels_terms_with_ids_and_sentiment() -> None:
    posts, preds = corpus(200)
    out = describe("gadget", posts, preds)
    anger = {d["term"]: d for d in out.drivers["emotion"]["anger"]}
    assert "refund policy" in anger and "amazing" in {d["term"] for d in out.drivers["emotion"]["joy"]}
    d = anger["refund policy"]
    by_id = {p.id: p for p in posts}
    assert len(d["post_ids"]) == min(d["posts"], 50)
    assert all("refund policy" in by_id[i].body for i in d["post_ids"])
    conf = {p.id: r["confidence"] for p, r in zip(posts, preds["emotion"], strict=True)}
    assert [conf[i] for i in d["post_ids"]] == sorted((conf[i] for i in d["post_ids"]), reverse=True)
    assert d["net_sentiment"] is not None and d["net_sentiment"]["value"] == -1.0
    assert all("gadget" not in x["term"] for rows in out.drivers["emotion"].values() for x in rows)
    # Every registry label is answered; labels without posts have none.
    assert list(out.drivers["emotion"]) == ["sadness", "joy", "love", "anger", "fear", "surprise", "neutral"]
    assert out.drivers["emotion"]["fear"] == [] and out.representatives["emotion"]["fear"] == []
    assert {d["term"] for d in out.drivers["sentiment"]["negative"]} >= {"refund policy"}
    # The answer's schema takes them.
    for rows in out.drivers["emotion"].values():
        [DriverRow.model_validate(x) for x in rows]


def test_representatives_are_confident_typical_and_different() -> None:
    posts, preds = corpus(200, seed=1)
    reps = describe("gadget", posts, preds).representatives["emotion"]["anger"]
    assert len(reps) == 3 and len({r["id"] for r in reps}) == 3
    for r in reps:
        RepresentativePost.model_validate(r)
        assert (
            r["link"].startswith("https://r/p") and r["subreddit"] == "gadgets" and r["created_utc"] > 1.7e9
        )
        assert len(r["snippet"]) <= SNIPPET_CHARS and r["snippet"].startswith("Gadget thoughts")
    snippets = [r["snippet"] for r in reps]
    # Different from each other: not three posts on the same of anger's three topics.
    assert len({next(t for t in TOPICS["anger"] if t in s) for s in snippets}) >= 2


def test_mmr_skips_a_near_copy() -> None:
    kept = KeptPosts(10)
    same = frozenset({"refund", "policy", "refund policy", "scam"})
    for i, (conf, terms) in enumerate(
        [(0.99, same), (0.98, same), (0.97, same), (0.9, frozenset({"support"}))]
    ):
        kept.offer(conf, partial(Candidate, conf, f"p{i}", "", "", 0.0, "", terms))
    chosen = [c.id for c in pick(kept, {"refund": 3.0, "policy": 3.0, "support": 2.0}, k=2)]
    assert chosen == ["p0", "p3"]


def test_kept_posts_are_bounded_and_keep_the_most_confident() -> None:
    kept = KeptPosts(5)
    built: list[int] = []

    def make(i: int, conf: float) -> Candidate:
        built.append(i)
        return Candidate(conf, f"p{i}", "", "", 0.0, "", frozenset())

    for i in range(100):
        conf = (i * 37 % 100) / 100
        kept.offer(conf, partial(make, i, conf))
    assert [c.confidence for c in kept.best_first()] == [0.99, 0.98, 0.97, 0.96, 0.95]
    assert len(built) < 40  # a post below the five best is never built


def test_snippet() -> None:
    assert snippet("  short\n text ") == "short text"
    long = snippet("word " * 100)
    assert len(long) <= SNIPPET_CHARS and long.endswith("…") and " wor…" not in long


def test_a_stream_of_chunks_gives_the_whole_answer() -> None:
    posts, preds = corpus(300, seed=2)
    whole = describe("gadget", posts, preds)
    first, second = InsightBuilder("gadget", ["emotion", "sentiment"], keep=300), None
    for k in range(0, 300, 64):
        part = InsightBuilder("gadget", ["emotion", "sentiment"], keep=300)
        part.add(posts[k : k + 64], {t: rows[k : k + 64] for t, rows in preds.items()})
        if second is None:
            second = part
        first.merge(part)
    assert first.result() == whole
    # Bounded: a small `keep` still gives the same drivers' terms and three representatives.
    small = InsightBuilder("gadget", ["emotion", "sentiment"], keep=20)
    for k in range(0, 300, 50):
        small.add(posts[k : k + 50], {t: rows[k : k + 50] for t, rows in preds.items()})
    res = small.result()
    assert [d["term"] for d in res.drivers["emotion"]["anger"]] == [
        d["term"] for d in whole.drivers["emotion"]["anger"]
    ]
    assert len(res.representatives["emotion"]["anger"]) == 3
    assert all(len(d["post_ids"]) <= 20 for d in res.drivers["emotion"]["anger"])


EDGE_CASES = {
    "empty": [],
    "one post": ["I am so angry about the gadget"],
    "urls only": ["https://example.com/gadget", "www.gadget.com/x", "[gadget](https://x.org)"] * 3,
    "emoji only": ["😡😡😡", "🔥🔥", "🎉 🎉 ✨", "👍"] * 3,
    "non-English": [
        "Das Gerät ist kaputt, der Akku hält nicht",
        "このガジェットは最高です",
        "El aparato no funciona",
    ]
    * 3,
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_give_a_valid_answer(case: str) -> None:
    texts = EDGE_CASES[case]
    posts = [Post(f"e{i}", "", t, "s", 1.0, 1, "") for i, t in enumerate(texts)]
    labels = ("sadness", "joy", "love", "anger", "fear", "surprise", "neutral")
    preds = {
        "emotion": [_row(labels[i % 2 * 3], 0.8, labels) for i in range(len(posts))],
        "sentiment": [_row("negative", 0.9, ("negative", "neutral", "positive")) for _ in posts],
    }
    summary = summarize("gadget", preds, False, {}, False, posts)
    analysis = Analysis.model_validate(
        {"keyword": "gadget", "count": len(posts), "post_source": "jsonl", "model_version": "v",
         "drivers": summary.drivers, "representatives": summary.representatives}
    )  # fmt: skip
    assert set(analysis.drivers) == {"emotion", "sentiment"}
    assert all(rows == [] for rows in analysis.drivers["sentiment"].values())  # all one label
    per_label = {"sadness": (len(posts) + 1) // 2, "anger": len(posts) // 2}
    reps = analysis.representatives["emotion"]
    assert {lab: len(r) for lab, r in reps.items() if r} == {k: min(3, v) for k, v in per_label.items() if v}
    if case in ("urls only", "emoji only", "empty", "one post"):
        assert all(rows == [] for rows in analysis.drivers["emotion"].values())


def test_the_cli_prints_each_labels_top_drivers() -> None:
    from tooling.cli.analyze import format_analysis

    posts, preds = corpus(200)
    out = describe("gadget", posts, preds)
    data = {"keyword": "gadget", "count": 200, "post_source": "jsonl", "source": "inference", "time": 0.1,
            "drivers": out.drivers}  # fmt: skip
    lines = format_analysis(data)
    anger = next(line for line in lines if line.strip().startswith("anger"))
    assert "refund policy (z " in anger and "net -1.00" in anger and anger.count("posts") <= 5
    assert any("emotion drivers" in line for line in lines) and any(
        "sentiment drivers" in line for line in lines
    )
