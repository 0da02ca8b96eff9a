"""The drivers of an /analyze answer as text lines (the CLI's `analyze`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TOP = 5  # drivers shown per label


def _driver(d: Mapping[str, Any]) -> str:
    net = d.get("net_sentiment")
    mood = f", net {net['value']:+.2f}" if net else ""
    return f"{d['term']} (z {d['z']:.1f}, {d['posts']} posts{mood})"


def driver_lines(data: Mapping[str, Any]) -> list[str]:
    """Per task, each label's top drivers: "  anger    refund policy (z 5.2, 14 posts, net -0.71), ..."."""
    lines: list[str] = []
    for task, labels in (data.get("drivers") or {}).items():
        rows = [(label, drivers) for label, drivers in labels.items() if drivers]
        if not rows:
            continue
        lines += ["", f"{task} drivers (terms distinctive of each label's posts; z >= 1.96)"]
        lines += [f"  {label:<10}" + ", ".join(_driver(d) for d in drivers[:TOP]) for label, drivers in rows]
    return lines
