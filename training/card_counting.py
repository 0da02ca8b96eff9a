"""The model card's "Counting under shift" section (from `card["counting_shift"]`, written
by training.counting_choice through the pipeline or `emotion-monitor model counting`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROTOCOL_NAMES = {"uniform": "uniform mixes", "natural": "near-natural mixes"}


def _cells(fig: Mapping[str, float], chosen: bool) -> str:
    cov = f"{fig['coverage']:.3f}" if chosen else f"{fig['coverage_bootstrap_only']:.3f}"
    width = fig["mean_width"] if chosen else fig["width_bootstrap_only"]
    return f"{fig['mean_tvd']:.4f} | {fig['p90_tvd']:.4f} | {cov} | {100 * width:.1f}"


def _set_table(name: str, sr: Mapping[str, Any], method: str) -> list[str]:
    lines: list[str] = []
    for n, by_proto in sr["protocol"].items():
        protos = list(by_proto)
        draws = next(iter(next(iter(by_proto.values())).values()))["draws"]
        lines += [
            f"**{name}**, {sr['fit']} fit, n = {n} ({draws} samples per protocol):",
            "",
            "| method | natural-mix TVD | "
            + " | ".join(
                f"{PROTOCOL_NAMES.get(p, p)}: mean TVD | p90 TVD | coverage | width (points)" for p in protos
            )
            + " |",
            "|---|---:|" + "---:|---:|---:|---:|" * len(protos),
        ]
        for m in by_proto[protos[0]]:
            label = f"**{m}** (served)" if m == method else m
            natural = sr["natural_tvd"].get(m)
            nat = "" if natural is None else f"{natural:.4f}"
            cells = " | ".join(_cells(by_proto[p][m], m == method) for p in protos)
            lines.append(f"| {label} | {nat} | {cells} |")
        lines.append("")
    return lines


def counting_shift_section(card: Mapping[str, Any]) -> list[str]:
    reports = card.get("counting_shift")
    if not reports:
        return []
    lines = [
        "## Counting under shift (the breakdown at label mixes unlike the training data's)",
        "",
        "A keyword's posts never have the natural label mix. The artificial-prevalence protocol draws "
        "samples of n texts at (a) uniformly random label mixes (Dirichlet, alpha = 1) and (b) mixes near "
        "the set's own (Dirichlet, concentration 20 around it), counts each sample with each method and "
        "compares with the sample's true shares: mean and 90th-percentile total-variation distance (TVD), "
        "and the coverage of the 95 % intervals (share of (label, sample) pairs whose true share lies "
        "inside) with their mean width in percentage points. On the product's domain (Reddit validation) "
        "every method is cross-fitted over 5 folds (fitted on four, samples drawn from the fifth), so no "
        "text both fits and scores; the natural-mix TVD there is the mean over the five held-out folds. "
        "Other sets are counted with the fit as served (fitted on Reddit validation): reported, never used "
        "to choose; test splits were read once, after the choice.",
        "",
        "Intervals resample the posts (bootstrap) and the fitting data (each draw uses one of the stored "
        "fits on a bootstrap resample of the validation set), then add the served margin to each side. "
        "Coverage and width of the served method include that margin; the other rows show the bootstrap "
        "interval alone.",
        "",
    ]
    for task, rep in reports.items():
        lines += [
            f"### {task}: `{rep['method']}`",
            "",
            f"Chosen by {rep['selected_by']} (`{rep['fitted_on']}`). Interval margin "
            f"{100 * rep['interval_margin']:.2f} points per side: the smallest that brings the coverage to "
            "95 % under both protocols on draws of another seed (the same validation texts; the test splits "
            "and the other domains check it).",
            "",
        ]
        for name, sr in rep["sets"].items():
            lines += _set_table(name, sr, rep["method"])
        lines += _precision_table(rep)
    return lines


def _precision_table(rep: Mapping[str, Any]) -> list[str]:
    """The served method re-measured with more draws on other seeds (`model counting-precision`)."""
    rows = rep.get("precision")
    if not rows:
        return []
    lines = [
        f"**Precision of the n = 250 figures** (`{rep['fitted_on']}` validation, cross-fitted, "
        f"`{rep['method']}` only, {int(rows[0]['draws'])} draws per protocol and seed; nothing fitted "
        "or chosen on these draws; coverage of the served interval, its margin included):",
        "",
        "| seed | uniform mixes: mean TVD | coverage | near-natural mixes: mean TVD | coverage |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {int(r['seed'])} | {r['uniform_mean_tvd']:.4f} | {r['uniform_coverage']:.3f} | "
        f"{r['natural_mean_tvd']:.4f} | {r['natural_coverage']:.3f} |"
        for r in rows
    ]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k.endswith(("tvd", "coverage"))}
    lines += [
        f"| all | {mean['uniform_mean_tvd']:.4f} | {mean['uniform_coverage']:.3f} | "
        f"{mean['natural_mean_tvd']:.4f} | {mean['natural_coverage']:.3f} |",
        "",
    ]
    return lines
