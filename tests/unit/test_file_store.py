"""The file analysis keeps its per-text probabilities on disk (`ProbabilityStore`) and only
the strongly negative texts' ids: the answer is the one the in-memory path (the Aggregator's
own `summarize` and `strongly_negative` over every row) gives for the same texts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from serve_app.counting.quantify import Counting, counting_from_spec, quantify
from serve_app.domain.posts import Post
from serve_app.domain.records import ServedModels, TaskModel
from serve_app.flow.aggregate import strongly_negative, summarize
from serve_app.flow.file_analysis import FileOptions, analyze_posts, default_sinks
from serve_app.flow.prob_store import ProbabilityStore
from serve_app.model.batching import probs_to_rows
from serve_app.model.preprocess import post_text

pytestmark = pytest.mark.unit

WORDS = [
    "the",
    "battery",
    "phone",
    "screen",
    "great",
    "awful",
    "love",
    "hate",
    "service",
    "waited",
    "price",
    "cheap",
    "broke",
    "works",
    "fine",
]


def _models() -> ServedModels:
    heads = json.loads(Path("models/multitask/labels.json").read_text())["heads"]
    tasks = {
        t: TaskModel(
            "v1", tuple(heads[t]["labels"]), ("en",), 8, "models/multitask",
            counting=counting_from_spec(heads[t]["breakdown"]),
        )
        for t in ("sentiment", "emotion")
    }  # fmt: skip
    return ServedModels("sentiment", tasks)


def test_the_store_gives_back_the_appended_rows_exactly() -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.dirichlet(np.ones(7), size=n).astype(np.float32) for n in (5, 0, 12, 1)]
    store = ProbabilityStore({"emotion": 7})
    try:
        for b in blocks:
            store.append({"emotion": b})
        np.testing.assert_array_equal(store.matrix("emotion"), np.concatenate(blocks))
        store.append({"emotion": blocks[0]})  # appending after a read goes on at the end
        assert store.rows == 23 and len(store.matrix("emotion")) == 23
    finally:
        store.close()


def test_a_file_gets_the_in_memory_answer() -> None:
    models = _models()
    rng = np.random.default_rng(7)
    n = 700
    posts = [
        Post(f"p{i}", f"title {i}", " ".join(rng.choice(WORDS, size=12)), "", 0.0, 0, "") for i in range(n)
    ]
    texts = [post_text(p.title, p.body) for p in posts]
    probs = {
        t: rng.dirichlet(np.ones(len(m.labels)) * 0.3, size=n).astype(np.float32)
        for t, m in models.tasks.items()
    }
    row_of = {x: i for i, x in enumerate(texts)}

    def score(chunk: Sequence[str]) -> Mapping[str, np.ndarray]:
        idx = [row_of[x] for x in chunk]
        return {t: p[idx] for t, p in probs.items()}

    opts = FileOptions(include_other_languages=True)
    chunks = [posts[i : i + 100] for i in range(0, n, 100)]
    got = analyze_posts(chunks, models, score, opts, "f.jsonl", default_sinks(models, opts)).model_dump()

    preds = {t: probs_to_rows(p, models.tasks[t].labels) for t, p in probs.items()}
    counting = {t: m.counting or Counting() for t, m in models.tasks.items()}
    summary = summarize("f.jsonl", preds, False, counting)
    for field, expected in summary.breakdowns.items():
        assert got[field] == expected, field
    assert got["net_sentiment"] == summary.net_sentiment
    expected_negative = strongly_negative([p.id for p in posts], preds["sentiment"], 0.8, "negative")
    assert got["strongly_negative"] == expected_negative and expected_negative["count"] > 0
    assert got["scored"] == got["newly_scored"] == n


@pytest.mark.parametrize("head", ["cc", "pcc", "sentiment", "emotion"])
def test_float32_probabilities_are_counted_as_their_float64_copy(head: str) -> None:
    """The counting widens a file's float32 matrix where it reads it: the same answer."""
    heads = json.loads(Path("models/multitask/labels.json").read_text())["heads"]
    counting = counting_from_spec(heads[head]["breakdown"]) if head in heads else Counting(head)
    k = len(heads[head]["labels"]) if head in heads else 4
    probs = np.random.default_rng(3).dirichlet(np.ones(k) * 0.4, size=3000).astype(np.float32)
    a, b = quantify(probs, counting, rest=0), quantify(probs.astype(np.float64), counting, rest=0)
    for x, y in zip(
        (a.shares, a.low, a.high, a.draws, a.among), (b.shares, b.low, b.high, b.draws, b.among), strict=True
    ):
        np.testing.assert_array_equal(x, y)
