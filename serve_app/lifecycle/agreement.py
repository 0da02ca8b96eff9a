"""How two versions compare on the same posts (pure; the shadow pairs feed it).

Per head: agreement, Cohen's kappa, the live-by-candidate confusion matrix, each label's
prevalence difference (candidate minus live) with a paired 95 % interval, the
Stuart-Maxwell test of marginal homogeneity (the whole label mix), and each version's
median model time per post.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from serve_app.lifecycle.shadow import ShadowPair
from serve_app.monitoring.drift import chi2_sf as drift_chi2_sf

Z95 = 1.959963984540054


class LabelShift(BaseModel):
    label: str
    live_share: float
    candidate_share: float
    diff: float  # candidate - live
    lo: float  # paired 95 % interval of diff
    hi: float


class MixTest(BaseModel):
    """Stuart-Maxwell: do the two versions' label mixes differ (paired)?"""

    statistic: float
    df: int
    p_value: float


class HeadComparison(BaseModel):
    task: str
    live_version: str
    candidate_version: str
    n: int
    agreement: float
    kappa: float
    labels: list[str]
    confusion: list[list[int]]  # rows: live label, columns: candidate label
    prevalence: list[LabelShift]
    mix_test: MixTest
    live_p50_ms: float
    candidate_p50_ms: float


def confusion(live: Sequence[str], cand: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for a, b in zip(live, cand, strict=True):
        m[index[a], index[b]] += 1
    return m


def cohen_kappa(m: np.ndarray) -> float:
    """Cohen's kappa of a square agreement table; 1.0 when both raters use one label only."""
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / n**2
    return 1.0 if pe == 1.0 else float((po - pe) / (1 - pe))


def paired_shift(m: np.ndarray, k: int) -> tuple[float, float, float]:
    """Candidate minus live share of label k with a paired 95 % (Wald) interval: per post
    d = [cand = k] - [live = k], so the pairing's correlation narrows the interval."""
    n = int(m.sum())
    if n == 0:
        return 0.0, 0.0, 0.0
    only_cand = float(m[:, k].sum() - m[k, k])  # d = +1
    only_live = float(m[k, :].sum() - m[k, k])  # d = -1
    mean = (only_cand - only_live) / n
    var = ((only_cand + only_live) / n - mean**2) * n / max(1, n - 1)
    half = Z95 * math.sqrt(max(var, 0.0) / n)
    return mean, mean - half, mean + half


def chi2_sf(x: float, df: int) -> float:
    """P(chi2_df > x) (scipy's when installed; else the drift watch's numpy-free one)."""
    if df <= 0:
        return float("nan")
    if x <= 0:
        return 1.0
    try:
        from scipy.stats import chi2

        return float(chi2.sf(x, df))
    except ImportError:
        return drift_chi2_sf(x, df)


def stuart_maxwell(m: np.ndarray) -> MixTest:
    """Stuart-Maxwell marginal homogeneity test of a square paired table; labels neither
    version ever gave are left out, and the statistic uses the pseudo-inverse (its rank is df)."""
    used = [i for i in range(len(m)) if m[i, :].sum() + m[:, i].sum() > 0]
    t = m[np.ix_(used, used)].astype(np.float64)
    k = len(used)
    if k < 2:
        return MixTest(statistic=0.0, df=0, p_value=1.0)
    d = (t.sum(axis=1) - t.sum(axis=0))[: k - 1]
    s = -(t + t.T)
    np.fill_diagonal(s, t.sum(axis=1) + t.sum(axis=0) - 2 * np.diag(t))
    s = s[: k - 1, : k - 1]
    df = int(np.linalg.matrix_rank(s))
    if df == 0:
        return MixTest(statistic=0.0, df=0, p_value=1.0)
    stat = float(d @ np.linalg.pinv(s) @ d)
    return MixTest(statistic=stat, df=df, p_value=chi2_sf(stat, df))


def compare_head(pairs: Sequence[ShadowPair], labels: Sequence[str]) -> HeadComparison:
    """The comparison of one task's pairs (all from one live and one candidate version)."""
    if not pairs:
        raise ValueError("no pairs to compare")
    first = pairs[0]
    seen = {p.live_label for p in pairs} | {p.candidate_label for p in pairs}
    known = list(labels) + sorted(seen - set(labels))
    m = confusion([p.live_label for p in pairs], [p.candidate_label for p in pairs], known)
    n = int(m.sum())
    shifts = []
    for k, lab in enumerate(known):
        diff, lo, hi = paired_shift(m, k)
        shifts.append(
            LabelShift(
                label=lab,
                live_share=float(m[k, :].sum() / n),
                candidate_share=float(m[:, k].sum() / n),
                diff=diff,
                lo=lo,
                hi=hi,
            )
        )
    return HeadComparison(
        task=first.task,
        live_version=first.live_version,
        candidate_version=first.candidate_version,
        n=n,
        agreement=float(np.trace(m) / n),
        kappa=cohen_kappa(m),
        labels=known,
        confusion=m.tolist(),
        prevalence=shifts,
        mix_test=stuart_maxwell(m),
        live_p50_ms=float(np.median([p.live_ms for p in pairs])),
        candidate_p50_ms=float(np.median([p.candidate_ms for p in pairs])),
    )


def compare_pairs(
    pairs: Sequence[ShadowPair], labels: dict[str, Sequence[str]] | None = None
) -> list[HeadComparison]:
    """One comparison per (task, live version, candidate version) among the pairs."""
    groups: dict[tuple[str, str, str], list[ShadowPair]] = {}
    for p in pairs:
        groups.setdefault((p.task, p.live_version, p.candidate_version), []).append(p)
    return [compare_head(group, (labels or {}).get(key[0], ())) for key, group in sorted(groups.items())]
