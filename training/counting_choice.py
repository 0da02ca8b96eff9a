"""Choosing each head's counting method under shifted label mixes, and what the artifact and
its card keep of it (numpy only; the training pipeline and `emotion-monitor model counting`
both call `choose_counting_under_shift`).

Per head, on the product's own domain (the head's first `breakdown_sets` entry, Reddit):
1. every candidate method is measured with the artificial-prevalence protocol
   (training.shift), cross-fitted over five folds, at n = 50, 250 and 1000;
2. the method with the lowest mean TVD at n = 250 (mean of the uniform and near-natural
   protocols) is chosen;
3. the interval margin: the smallest of shift.MARGINS whose coverage reaches 95 % under
   both protocols, on draws of another seed than the reported ones (same texts: say so);
4. the chosen method is fitted on the whole set, with resampled fits for the intervals.
Other sets of the task (CARER, TweetEval) are then measured with the served fit: reported,
never used to choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np

from serve_app.counting.breakdown import label_shares, tvd
from serve_app.counting.quantify import METHODS, Counting, estimate
from training.counting import CountingSpec, counting_spec, fit_counting
from training.shift import FOLDS, MARGINS, PROTOCOLS, ShiftScore, shift_protocol, whole_set_tvd

CHOICE_N = 250
DRAWS = {50: 200, 250: 500, 1000: 200}  # samples per protocol (the choice's size gets the most)
SMALL_SET, SMALL_DRAWS = 2_000, 20  # validation sets below SMALL_SET texts: a quick protocol
TARGET_COVERAGE = 0.95
SELECTED_BY = (
    "lowest mean TVD at n=250 over the uniform and near-natural shift protocols, cross-fitted "
    f"({FOLDS} folds) on the product's domain"
)


class Figures(TypedDict):
    mean_tvd: float
    p90_tvd: float
    coverage: float  # with the served margin (0 for methods not chosen)
    mean_width: float
    coverage_bootstrap_only: float  # the bootstrap interval alone (margin 0)
    width_bootstrap_only: float
    draws: int


class SetReport(TypedDict):
    """One labelled set under the protocol: {n: {protocol: {method: Figures}}}."""

    fit: str  # "cross-fitted" or "served"
    protocol: dict[str, dict[str, dict[str, Figures]]]
    natural_tvd: dict[str, float]  # the whole set at its own mix


class HeadReport(TypedDict):
    method: str
    selected_by: str
    fitted_on: str
    interval_margin: float
    margin_coverage: dict[str, dict[str, float]]  # protocol -> margin -> coverage (calibration draws)
    sets: dict[str, SetReport]
    seed: int


@dataclass(frozen=True)
class LabelledSet:
    name: str
    probs: np.ndarray  # calibrated probabilities, the served head's
    y: np.ndarray
    split: str = "validation"


def _figures(s: ShiftScore, margin: float) -> Figures:
    return {
        "mean_tvd": s.mean_tvd,
        "p90_tvd": s.p90_tvd,
        "coverage": s.coverage_by_margin.get(margin, s.coverage),
        "mean_width": s.width_by_margin.get(margin, s.mean_width),
        "coverage_bootstrap_only": s.coverage_by_margin[0.0],
        "width_bootstrap_only": s.width_by_margin[0.0],
        "draws": s.draws,
    }


def _table(
    runs: Mapping[int, Mapping[str, Mapping[str, ShiftScore]]], margins: Mapping[str, float]
) -> dict[str, dict[str, dict[str, Figures]]]:
    return {
        str(n): {p: {m: _figures(s, margins.get(m, 0.0)) for m, s in ms.items()} for p, ms in res.items()}
        for n, res in runs.items()
    }


def _margin(calibration: Mapping[str, Mapping[str, ShiftScore]], method: str) -> float:
    """The smallest margin whose coverage reaches TARGET_COVERAGE under every protocol."""
    for m in MARGINS:
        if all(res[method].coverage_by_margin[m] >= TARGET_COVERAGE for res in calibration.values()):
            return m
    return MARGINS[-1]


def choose_head(
    domain: LabelledSet,
    methods: Sequence[str] = METHODS,
    sizes: Sequence[int] = tuple(DRAWS),
    draws: Mapping[int, int] = DRAWS,
    seed: int = 0,
) -> tuple[Counting, HeadReport]:
    """The served fit for one head and the report of how it was chosen."""
    p, y = domain.probs, domain.y
    cache: dict[tuple[str, int], Counting] = {}
    runs = {n: shift_protocol(p, y, methods, n, draws[n], seed=seed, fits=cache) for n in sizes}
    chosen = runs[CHOICE_N] if CHOICE_N in runs else runs[sizes[0]]
    score = {m: float(np.mean([chosen[proto][m].mean_tvd for proto in PROTOCOLS])) for m in methods}
    method = min(score, key=lambda m: score[m])
    calibration = shift_protocol(
        p, y, [method], CHOICE_N, draws.get(CHOICE_N, 500), seed=seed + 1, fits=cache
    )
    margin = _margin(calibration, method)
    fit = replace(fit_counting(p, y, method, seed=seed), interval_margin=margin)
    report: HeadReport = {
        "method": method,
        "selected_by": SELECTED_BY,
        "fitted_on": domain.name,
        "interval_margin": margin,
        "margin_coverage": {
            proto: {str(m): c for m, c in res[method].coverage_by_margin.items()}
            for proto, res in calibration.items()
        },
        "sets": {
            f"{domain.name}_{domain.split}": {
                "fit": "cross-fitted",
                "protocol": _table(runs, {method: margin}),
                "natural_tvd": whole_set_tvd(p, y, methods),
            }
        },
        "seed": seed,
    }
    return fit, report


def served_report(
    data: LabelledSet, fits: Mapping[str, Counting], n: int = CHOICE_N, draws: int = 250, seed: int = 0
) -> SetReport:
    """Another set measured with fits made elsewhere (the served one among them): every text
    may be drawn, and the whole set's TVD uses the fit as served."""
    res = shift_protocol(data.probs, data.y, list(fits), n, draws, seed=seed, served=dict(fits))
    k = data.probs.shape[1]
    true = label_shares(data.y, k)
    return {
        "fit": "served",
        "protocol": _table({n: res}, {m: f.interval_margin for m, f in fits.items()}),
        "natural_tvd": {m: tvd(estimate(data.probs, f), true) for m, f in fits.items()},
    }


def breakdown_spec(fit: Counting, report: HeadReport) -> CountingSpec:
    """What labels.json keeps for a head: the fit, and how it was chosen (the figures stay
    in the model card)."""
    spec = counting_spec(fit)
    spec["interval_margin"] = fit.interval_margin
    spec["selected_by"] = report["selected_by"]
    spec["measured_on"] = [report["fitted_on"]]
    return spec


def choose_counting_under_shift(
    sets: Mapping[str, Sequence[LabelledSet]], seed: int = 0, other_draws: int = 250
) -> tuple[dict[str, CountingSpec], dict[str, HeadReport]]:
    """Per task: `sets[task][0]` is the domain set the method is chosen and fitted on; the
    others (other domains, test splits) are measured with every method fitted on the whole
    domain set, the chosen one as served."""
    specs: dict[str, CountingSpec] = {}
    reports: dict[str, HeadReport] = {}
    for task, task_sets in sets.items():
        domain, others = task_sets[0], task_sets[1:]
        if len(domain.y) < SMALL_SET:
            # A set this small cannot tell methods apart at these sizes anyway (a smoke
            # run's few hundred texts): one size, few samples, so training stays quick.
            fit, report = choose_head(domain, sizes=(CHOICE_N,), draws={CHOICE_N: SMALL_DRAWS}, seed=seed)
            other_draws = min(other_draws, SMALL_DRAWS)
        else:
            fit, report = choose_head(domain, seed=seed)
        if others:
            fits = {
                m: fit if m == fit.method else fit_counting(domain.probs, domain.y, m, seed=seed)
                for m in METHODS
            }
            for other in others:
                name = f"{other.name}_{other.split}"
                report["sets"][name] = served_report(other, fits, draws=other_draws, seed=seed)
        specs[task] = breakdown_spec(fit, report)
        reports[task] = report
    return specs, reports
