"""Aggregator: per-label share and mean confidence, and an optional PNG chart."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from ray import serve

# One colour per emotion, kept across charts so readers learn them.
COLOURS = {
    "sadness": "#4C72B0",
    "joy": "#F2C14E",
    "love": "#E377C2",
    "anger": "#D62728",
    "fear": "#8C564B",
    "surprise": "#2CA02C",
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


def render_chart(agg: Sequence[dict[str, Any]], keyword: str, count: int, title_suffix: str = "") -> bytes:
    """A horizontal bar chart of the breakdown, labelled with % and mean confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(agg, key=lambda r: r["pct"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
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
    short = keyword if len(keyword) <= 40 else keyword[:37] + "..."
    ax.set_title(f"Emotions in {count} posts about “{short}”{title_suffix}")
    ax.spines[["top", "right"]].set_visible(False)
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

    def summarize(self, keyword: str, predictions: list[dict[str, Any]], return_plot: bool) -> dict[str, Any]:
        agg = aggregate(predictions, self.labels)
        plot = None
        if return_plot:
            plot = base64.b64encode(render_chart(agg, keyword, len(predictions))).decode("ascii")
        return {"agg": agg, "plot_base64": plot}
