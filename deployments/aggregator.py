"""Aggregator: per-label share and mean confidence, and an optional PNG chart."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from typing import Any

from ray import serve

# A child of "ray.serve": inside a replica, Serve's handlers (JSON with request_id) get it.
log = logging.getLogger("ray.serve.emotion_monitor.aggregator")

# One colour per emotion, kept across charts so readers learn them.
COLOURS = {
    "sadness": "#4C72B0",
    "joy": "#F2C14E",
    "love": "#E377C2",
    "anger": "#D62728",
    "fear": "#8C564B",
    "surprise": "#2CA02C",
    "negative": "#D62728",
    "neutral": "#9E9E9E",
    "positive": "#2CA02C",
}


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


def aggregate(predictions: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Every label with its share of the posts (%, summing to 100) and mean confidence.

    `avg_score` is the mean probability the model gave the label over the posts that were
    assigned to it (0 when none were).
    """
    n = len(predictions)
    counts = dict.fromkeys(labels, 0)
    conf_sum = dict.fromkeys(labels, 0.0)
    for p in predictions:
        counts[p["label"]] += 1
        conf_sum[p["label"]] += float(p["confidence"])
    pcts = round_to_total([100.0 * counts[lab] / n for lab in labels]) if n else [0.0] * len(labels)
    return [
        {
            "label": lab,
            "pct": pct,
            "count": counts[lab],
            "avg_score": round(conf_sum[lab] / counts[lab], 4) if counts[lab] else 0.0,
        }
        for lab, pct in zip(labels, pcts, strict=True)
    ]


def strongly_negative(
    post_ids: Sequence[str], predictions: Sequence[dict[str, Any]], threshold: float
) -> dict[str, Any]:
    """Posts the sentiment model calls negative with at least `threshold` confidence."""
    hits = sorted(
        (
            (float(p["confidence"]), pid)
            for pid, p in zip(post_ids, predictions, strict=True)
            if p["label"] == "negative" and float(p["confidence"]) >= threshold
        ),
        reverse=True,
    )
    n = len(predictions)
    return {
        "threshold": threshold,
        "count": len(hits),
        "pct": round(100.0 * len(hits) / n, 2) if n else 0.0,
        "ids": [pid for _, pid in hits],
    }


def _bars(ax: Any, agg: Sequence[dict[str, Any]], title: str) -> None:
    rows = sorted(agg, key=lambda r: r["pct"])
    bars = ax.barh(
        [r["label"] for r in rows],
        [r["pct"] for r in rows],
        color=[COLOURS.get(r["label"], "#777777") for r in rows],
    )
    top = max((r["pct"] for r in rows), default=0.0)
    for bar, r in zip(bars, rows, strict=True):
        ax.text(
            bar.get_width() + top * 0.01 + 0.3,
            bar.get_y() + bar.get_height() / 2,
            f"{r['pct']:.1f}%  (conf {r['avg_score']:.2f})",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, max(10.0, top * 1.35))
    ax.set_xlabel("share of posts (%)")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)


def render_chart(
    agg: Sequence[dict[str, Any]],
    keyword: str,
    count: int,
    title_suffix: str = "",
    sentiment_agg: Sequence[dict[str, Any]] | None = None,
) -> bytes:
    """Horizontal bar charts of the breakdowns (emotion, sentiment), with % and mean confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = keyword if len(keyword) <= 40 else keyword[:37] + "..."
    panels = [(a, name) for a, name in ((agg, "Emotions"), (sentiment_agg, "Sentiment")) if a]
    if not panels:
        panels = [(agg, "Emotions")]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.2), dpi=100, squeeze=False)
    for ax, (a, name) in zip(axes[0], panels, strict=True):
        _bars(ax, a, f"{name} in {count} posts about “{short}”{title_suffix}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@serve.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=64,
    logging_config={"enable_access_log": False},
)
class Aggregator:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def summarize(
        self,
        keyword: str,
        predictions: list[dict[str, Any]] | dict[str, list[dict[str, Any]]],
        return_plot: bool,
        labels: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """Breakdown per task (`agg` is emotion's, `sentiment_agg` sentiment's) and the chart."""
        by_task = {"emotion": predictions} if isinstance(predictions, list) else predictions
        labels = {"emotion": self.labels, **(labels or {})}
        aggs = {task: aggregate(preds, labels[task]) for task, preds in by_task.items()}
        log.debug("summarized %s for %r (plot=%s)", ",".join(by_task), keyword, return_plot)
        out: dict[str, Any] = {"agg": aggs.get("emotion", []), "sentiment_agg": aggs.get("sentiment")}
        out["plot_base64"] = None
        if return_plot:
            n = max((len(p) for p in by_task.values()), default=0)
            png = render_chart(out["agg"], keyword, n, sentiment_agg=out["sentiment_agg"])
            out["plot_base64"] = base64.b64encode(png).decode("ascii")
        return out
