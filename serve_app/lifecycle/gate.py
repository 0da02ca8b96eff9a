"""The promotion gate: a candidate version replaces the live one only if

1. its validation figures (model_card.json) are no worse than the live version's, within a
   tolerance: int8 macro-F1 and breakdown TVD of every validation set the live card reports,
   and the shift protocol's mean TVD (the card's counting method, each sample size and mix)
   when the live card has it;
2. on live shadow data, each head it would take over has at least `min_pairs` pairs, and no
   label's share differs beyond `share_bound`: the paired 95 % interval of the difference
   must not lie wholly beyond +-bound (a difference the data cannot tell from the bound passes).

Refusals raise `PromotionRefused` naming each failed check and by how much.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from serve_app.lifecycle.agreement import HeadComparison


class GateCheck(BaseModel):
    name: str
    passed: bool
    value: float | None  # the candidate's figure (or the measured one)
    limit: float | None  # what it had to meet
    detail: str


class GateResult(BaseModel):
    version: str
    tasks: list[str]  # the heads the candidate would take over
    checks: list[GateCheck]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


class PromotionRefused(RuntimeError):
    """A gate did not hold; the message names each failed check and by how much."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        lines = [f"{c.name}: {c.detail}" for c in result.failed]
        super().__init__(f"promotion of {result.version} refused: " + "; ".join(lines))


def card_figures(card: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, tuple[float, bool]]:
    """name -> (value, higher is better) of a model card's validation figures for `tasks`."""
    out: dict[str, tuple[float, bool]] = {}
    for name, entry in (card.get("metrics") or {}).items():
        if not name.endswith("_validation") or entry.get("task") not in tasks:
            continue
        figures = entry.get("int8") or entry.get("fp32") or {}
        if figures.get("macro_f1") is not None:
            out[f"{name}.macro_f1"] = (float(figures["macro_f1"]), True)
        if figures.get("breakdown_tvd") is not None:
            out[f"{name}.breakdown_tvd"] = (float(figures["breakdown_tvd"]), False)
    for task, shift in (card.get("counting_shift") or {}).items():
        if task not in tasks:
            continue
        method = shift.get("method")
        for set_name, entry in (shift.get("sets") or {}).items():
            if not set_name.endswith("_validation"):
                continue
            for n, mixes in (entry.get("protocol") or {}).items():
                for mix, methods in mixes.items():
                    tvd = (methods.get(method) or {}).get("mean_tvd")
                    if tvd is not None:
                        out[f"shift.{set_name}.n{n}.{mix}.mean_tvd"] = (float(tvd), False)
    return out


def read_card(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "model_card.json"
    if not path.is_file():
        return {}
    card: dict[str, Any] = json.loads(path.read_text())
    return card


def figure_checks(
    live: Mapping[str, Any], candidate: Mapping[str, Any], tasks: Sequence[str], tolerance: float
) -> list[GateCheck]:
    """Each live validation figure against the candidate's (missing counts as worse)."""
    have = card_figures(candidate, tasks)
    checks = []
    for name, (ref, higher) in sorted(card_figures(live, tasks).items()):
        limit = ref - tolerance if higher else ref + tolerance
        if name not in have:
            checks.append(GateCheck(name=name, passed=False, value=None, limit=limit, detail="missing"))
            continue
        value = have[name][0]
        ok = value >= limit if higher else value <= limit
        worse = (ref - value) if higher else (value - ref)
        detail = f"{value:.4f} vs live {ref:.4f} ({'worse' if worse > 0 else 'better'} by {abs(worse):.4f}"
        detail += f", tolerance {tolerance:.4f})"
        checks.append(GateCheck(name=name, passed=ok, value=value, limit=limit, detail=detail))
    return checks


def shadow_checks(
    comparisons: Sequence[HeadComparison], tasks: Sequence[str], min_pairs: int, bound: float
) -> list[GateCheck]:
    """Enough pairs per head, and no label share shifted beyond the bound."""
    by_task = {c.task: c for c in comparisons}
    checks = []
    for task in tasks:
        comp = by_task.get(task)
        n = comp.n if comp else 0
        checks.append(
            GateCheck(
                name=f"shadow.{task}.pairs",
                passed=n >= min_pairs,
                value=float(n),
                limit=float(min_pairs),
                detail=f"{n} pairs, need {min_pairs}"
                + ("" if n >= min_pairs else f" ({min_pairs - n} short)"),
            )
        )
        if comp is None:
            continue
        for s in comp.prevalence:
            beyond = s.lo > bound or s.hi < -bound
            excess = max(s.lo - bound, -bound - s.hi, 0.0)
            checks.append(
                GateCheck(
                    name=f"shadow.{task}.share.{s.label}",
                    passed=not beyond,
                    value=s.diff,
                    limit=bound,
                    detail=f"share {s.candidate_share:.3f} vs live {s.live_share:.3f}: diff {s.diff:+.3f} "
                    f"[{s.lo:+.3f}, {s.hi:+.3f}], bound +-{bound:.3f}"
                    + (f" (interval beyond it by {excess:.3f})" if beyond else ""),
                )
            )
    return checks


def evaluate_gate(
    version: str,
    live_cards: Mapping[str, Mapping[str, Any]],
    candidate_cards: Mapping[str, Mapping[str, Any]],
    comparisons: Sequence[HeadComparison],
    tolerance: float,
    min_pairs: int,
    bound: float,
) -> GateResult:
    """Every check for the tasks the candidate takes over (cards keyed by task)."""
    checks: list[GateCheck] = []
    for task, cand_card in candidate_cards.items():
        checks += figure_checks(live_cards.get(task, {}), cand_card, [task], tolerance)
    checks += shadow_checks(comparisons, list(candidate_cards), min_pairs, bound)
    return GateResult(version=version, tasks=list(candidate_cards), checks=checks)
