"""What drivers and representative posts cost /analyze (`emotion-monitor bench analyze`): the
same keywords answered by the app with them and without them, and the pure functions alone."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

INSIGHT_HEADERS = [
    "scored before, no drivers p50 ms",
    "drivers + representatives added p50 ms",
    "in-process drivers + representatives p50 ms",
]


def in_process_ms(
    model_dir: Path, jsonl: Path, keywords: Sequence[str], repeats: int, max_length: int
) -> dict[str, float]:
    """Per keyword, the median ms of `describe` (both tasks) over its 250 posts, labelled by the model."""
    import numpy as np

    from serve_app.domain.records import PredictionRow
    from serve_app.explain.insights import describe
    from serve_app.model.predictor import OnnxPredictor
    from serve_app.model.preprocess import post_text
    from serve_app.sources.corpus import JsonlCorpus
    from tooling.bench.common import median_time

    corpus = JsonlCorpus.from_file(jsonl)
    model = OnnxPredictor(model_dir, threads=2, max_length=max_length)
    out = {}
    for kw in keywords:
        posts = corpus.search(kw, 250).posts
        probs = model.probabilities_all([post_text(p.title, p.body) for p in posts])
        preds: dict[str, list[PredictionRow]] = {}
        for task, p in probs.items():
            labels = model.info.heads[task].labels
            preds[task] = [
                {"label": labels[int(np.argmax(r))], "confidence": float(r.max()),
                 "scores": {lab: float(x) for lab, x in zip(labels, r, strict=True)}}
                for r in p
            ]  # fmt: skip
        out[kw] = 1000 * median_time(partial(describe, kw, posts, preds), repeats)
    model.session = None
    return out


def insight_columns(with_ms: list[float], without_ms: list[float], in_process: float) -> list[Any]:
    """The added cost: the all-scored-before path's p50 with and without drivers (seconds in)."""
    if not with_ms or not without_ms:
        return ["n/a", "n/a", in_process]
    w, wo = 1000 * statistics.median(with_ms), 1000 * statistics.median(without_ms)
    return [wo, w - wo, in_process]
