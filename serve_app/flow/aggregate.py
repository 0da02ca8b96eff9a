"""The breakdowns of an analysis: per-label shares with 95 % intervals (the served counting),
net sentiment, the strongly negative posts, drivers and representatives, and the PNG chart.

Pure functions: the Aggregator deployment (deployments/aggregator.py) and the file analysis
call the same `summarize`.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serve_app.counting.quantify import Counting, Quantified, net_sentiment, quantify
from serve_app.domain.posts import Post
from serve_app.domain.records import NetSentimentRow, PredictionRow, ShareRow, StronglyNegativeRow, Summary
from serve_app.domain.tasks import TASK_NAMES, TASKS, TaskSpec
from serve_app.explain.insights import Insights, describe

log = logging.getLogger("ray.serve.emotion_monitor.aggregator")


def round_to_total(values: Sequence[float], total: float = 100.0, decimals: int = 2) -> list[float]:
    """Round so the parts still add up to `total` exactly (largest remainder method)."""
    scale = 10**decimals
    raw = [v * scale for v in values]
    floors = [int(r // 1) for r in raw]
    missing = round(total * scale) - sum(floors)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - floors[i], reverse=True)
    for i in order[: max(0, missing)]:
        floors[i] += 1
    return [f / scale for f in floors]


def _rows(
    labels: Sequence[str],
    shares: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    counts: Sequence[int],
    conf_sum: Sequence[float],
    n: int,
) -> list[ShareRow]:
    pcts = round_to_total([100.0 * float(x) for x in shares]) if n else [0.0] * len(labels)
    return [
        {
            "label": lab,
            "pct": pct,
            # Rounded apart from pct; kept around it so the interval always holds the estimate.
            "pct_low": min(pct, round(100.0 * float(lo), 2)),
            "pct_high": max(pct, round(100.0 * float(hi), 2)),
            "count": int(c),
            "avg_score": round(cs / c, 4) if c else 0.0,
        }
        for lab, pct, lo, hi, c, cs in zip(labels, pcts, low, high, counts, conf_sum, strict=True)
    ]


def aggregate(
    predictions: Sequence[PredictionRow], task: TaskSpec, counting: Counting = Counting()
) -> dict[str, list[ShareRow]]:
    """`aggregate_quantified` without the bootstrap draws."""
    return aggregate_quantified(predictions, task, counting)[0]


def net_sentiment_of(task: TaskSpec, q: Quantified) -> NetSentimentRow | None:
    """Net sentiment from a breakdown with positive and negative labels, else None."""
    if not {"positive", "negative"} <= set(task.labels) or not len(q.draws):
        return None
    value, low, high = net_sentiment(q.shares, q.draws, task.labels)
    return {"value": round(value, 4), "low": round(low, 4), "high": round(high, 4)}


def _score_matrix(predictions: Sequence[PredictionRow], labels: Sequence[str]) -> np.ndarray:
    """The posts' scores, a row per post. Rows that hold their own float32 matrix (a file's
    `PredictionRows`) hand it over as it is: the counting widens what it reads (float32 ->
    float64 is exact, the same numbers) without a list of Python floats per post or a float64
    copy held throughout, which grew a 100,000-text file's peak memory."""
    held = getattr(predictions, "probs", None)
    if isinstance(held, np.ndarray) and tuple(getattr(predictions, "labels", ())) == tuple(labels):
        return held.reshape(len(predictions), len(labels))
    return np.array([[float(p["scores"][lab]) for lab in labels] for p in predictions]).reshape(
        len(predictions), len(labels)
    )


def aggregate_quantified(
    predictions: Sequence[PredictionRow], task: TaskSpec, counting: Counting = Counting()
) -> tuple[dict[str, list[ShareRow]], Quantified]:
    """Every label with its share of the posts (%, summing to 100, with a 95 % interval),
    the posts whose top label it is (`count`) and their mean confidence (`avg_score`).

    Shares and intervals follow the artifact's counting method (serve_app.counting.quantify); with
    `cc` a share is exactly count / posts. Also the bootstrap draws (for net sentiment).
    A task with a rest label (neutral) also gets the other
    labels' shares among the posts that carry one of them, under `task.among_field`.
    """
    labels = task.labels
    n = len(predictions)
    probs = _score_matrix(predictions, labels)
    counts = [0] * len(labels)
    conf_sum = [0.0] * len(labels)
    for p in predictions:
        i = labels.index(p["label"])
        counts[i] += 1
        conf_sum[i] += float(p["confidence"])
    bd = quantify(probs, counting, rest=task.rest_index)
    out = {task.response_field: _rows(labels, bd.shares, bd.low, bd.high, counts, conf_sum, n)}
    if task.among_field and task.rest_index is not None and bd.among is not None:
        keep = [i for i in range(len(labels)) if i != task.rest_index]
        assert bd.among_low is not None and bd.among_high is not None
        emotional = n - counts[task.rest_index]
        out[task.among_field] = _rows(
            [labels[i] for i in keep],
            bd.among,
            bd.among_low,
            bd.among_high,
            [counts[i] for i in keep],
            [conf_sum[i] for i in keep],
            emotional if counting.method == "cc" else n,
        )
    return out, bd


def negative_hits(
    post_ids: Sequence[str], predictions: Sequence[PredictionRow], threshold: float, label: str = "negative"
) -> list[tuple[float, str]]:
    """(confidence, id) of the posts the triage task calls `label` with at least `threshold`
    confidence (a file's are gathered a chunk at a time, so its ids need not all be kept)."""
    return [
        (float(p["confidence"]), pid)
        for pid, p in zip(post_ids, predictions, strict=True)
        if p["label"] == label and float(p["confidence"]) >= threshold
    ]


def triage_row(hits: Sequence[tuple[float, str]], n: int, threshold: float) -> StronglyNegativeRow:
    """The answer's `strongly_negative` from the hits among `n` posts, most confident first."""
    ordered = sorted(hits, reverse=True)
    return {
        "threshold": threshold,
        "count": len(ordered),
        "pct": round(100.0 * len(ordered) / n, 2) if n else 0.0,
        "ids": [pid for _, pid in ordered],
    }


def strongly_negative(
    post_ids: Sequence[str], predictions: Sequence[PredictionRow], threshold: float, label: str = "negative"
) -> StronglyNegativeRow:
    """Posts the triage task (sentiment) calls `label` with at least `threshold` confidence."""
    return triage_row(negative_hits(post_ids, predictions, threshold, label), len(predictions), threshold)


def _bars(ax: Any, agg: Sequence[ShareRow], task: TaskSpec, title: str) -> None:
    """Bars sorted by share, each with its 95 % interval; the rest label (no clear
    emotion) is drawn apart, in grey, below a line."""
    rest = [r for r in agg if r["label"] == task.rest_label]
    rows = rest + sorted((r for r in agg if r["label"] != task.rest_label), key=lambda r: r["pct"])
    # A gap between the rest label (at the bottom) and the others.
    ys = [float(i) + (0.6 if rest and i else 0.0) for i in range(len(rows))]
    bars = ax.barh(
        ys,
        [r["pct"] for r in rows],
        color=[task.colour(r["label"]) for r in rows],
        xerr=[
            [r["pct"] - r.get("pct_low", r["pct"]) for r in rows],
            [r.get("pct_high", r["pct"]) - r["pct"] for r in rows],
        ],
        error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1},
    )
    ax.set_yticks(ys, [r["label"] if r["label"] != task.rest_label else "no clear emotion" for r in rows])
    if rest:
        ax.axhline(0.8, color="#BBBBBB", linewidth=0.8)
    top = max((r.get("pct_high", r["pct"]) for r in rows), default=0.0)
    for bar, r in zip(bars, rows, strict=True):
        ax.text(
            r.get("pct_high", r["pct"]) + top * 0.01 + 0.3,
            bar.get_y() + bar.get_height() / 2,
            f"{r['pct']:.1f}% [{r.get('pct_low', r['pct']):.0f}-{r.get('pct_high', r['pct']):.0f}]"
            f"  (conf {r['avg_score']:.2f})",
            va="center",
            fontsize=8.5,
        )
    ax.set_xlim(0, max(10.0, top * 1.55))
    ax.set_xlabel("share of posts (%), bars: 95 % interval")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)


def render_chart(
    breakdowns: Mapping[str, Sequence[ShareRow]], keyword: str, count: int, title_suffix: str = ""
) -> bytes:
    """Horizontal bar charts of the breakdowns (a panel per task, registry order), with %,
    95 % interval and mean confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = keyword if len(keyword) <= 40 else keyword[:37] + "..."
    panels = [(TASKS[t], breakdowns[t]) for t in TASK_NAMES if breakdowns.get(t)]
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(7.5 * max(1, len(panels)), 4.4), dpi=100, squeeze=False
    )
    for ax, (task, agg) in zip(axes[0], panels, strict=False):
        _bars(ax, agg, task, f"{task.title} in {count} posts about “{short}”{title_suffix}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def summarize(
    keyword: str,
    predictions: Mapping[str, Sequence[PredictionRow]],
    return_plot: bool,
    counting: Mapping[str, Counting],
    partial: bool = False,
    posts: Sequence[Post] | None = None,
) -> Summary:
    breakdowns: dict[str, list[ShareRow]] = {}
    net: NetSentimentRow | None = None
    for task, preds in predictions.items():
        rows, quantified = aggregate_quantified(preds, TASKS[task], counting.get(task, Counting()))
        breakdowns.update(rows)
        net = net or net_sentiment_of(TASKS[task], quantified)
    log.debug("summarized %s for %r (plot=%s)", ",".join(predictions), keyword, return_plot)
    insights = describe(keyword, posts, predictions) if posts is not None else Insights({}, {})
    if not return_plot:
        return Summary(breakdowns, None, insights.drivers, insights.representatives, net)
    n = max((len(p) for p in predictions.values()), default=0)
    shown = {t: breakdowns[TASKS[t].response_field] for t in predictions}
    chart = render_chart(shown, keyword, n, " (partial)" if partial else "")
    return Summary(
        breakdowns, base64.b64encode(chart).decode("ascii"), insights.drivers, insights.representatives, net
    )
