"""Drift statistics: the last N scored posts of a source against the model's reference profile.

Pure numpy (the serving image has no scipy): a chi-square test of homogeneity on the
predicted label mix, a two-sample Kolmogorov-Smirnov test on the confidence (max
probability), and MMD between pooled sentence embeddings with a permutation null (fitted
by a gamma distribution, so p-values below 1 / permutations exist). docs/drift.md says
why these, and how the thresholds were chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from serve_app.config.settings import DriftSettings
from serve_app.model.drift_profile import HeadReference, ReferenceProfile


@dataclass(frozen=True)
class DriftThresholds:
    """An alert needs a test significant after Bonferroni over the check's tests AND an
    effect above its floor: with hundreds of posts, tiny harmless shifts are significant."""

    # family-wise, per check (all tests of a source and task); the default is the setting's
    alpha: float = DriftSettings.model_fields["alpha"].default
    min_tvd: float = 0.10  # predicted label mix, total-variation distance
    min_ks: float = 0.10  # confidence, KS statistic D
    min_mmd: float = 0.01  # embeddings, MMD^2 (RBF kernel on unit vectors)
    min_posts: int = DriftSettings.model_fields["min_posts"].default  # fewer posts in the window: no verdict
    permutations: int = 200
    embedding_sample: int = 500  # reference and window embeddings used by MMD (cost is quadratic)


@dataclass(frozen=True)
class TestResult:
    name: str  # label_mix | confidence | embedding
    statistic: float  # effect size: TVD, KS D, MMD^2
    p_value: float
    significant: bool


@dataclass(frozen=True)
class DriftCheck:
    """One (source, task) check: every test, the accuracy estimate, and the verdict."""

    source: str
    task: str
    model_version: str
    posts: int
    reference: str  # what the profile was made from, or "no reference"
    tests: tuple[TestResult, ...] = ()
    live_mix: dict[str, float] = field(default_factory=dict)
    reference_mix: dict[str, float] = field(default_factory=dict)
    estimated_accuracy: float | None = None
    reference_accuracy: float | None = None
    cpu_s: float = 0.0
    checked_at: float = 0.0

    @property
    def drifted(self) -> bool:
        return any(t.significant for t in self.tests)

    @property
    def reasons(self) -> list[str]:
        return [t.name for t in self.tests if t.significant]

    def test(self, name: str) -> TestResult | None:
        return next((t for t in self.tests if t.name == name), None)


# -- distributions (numpy only) -------------------------------------------------------


def _gammaq(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (Numerical Recipes 6.2)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1:  # series for P, then 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, 1000):  # Lentz's continued fraction for Q
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - lg) * h)


def chi2_sf(x: float, df: int) -> float:
    return _gammaq(df / 2.0, x / 2.0) if df > 0 else 1.0


def kolmogorov_sf(t: float) -> float:
    """P(K > t) for the Kolmogorov distribution."""
    if t < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))
    return min(1.0, max(0.0, 2 * total))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.abs(p - q).sum() / 2)


def chi2_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two count vectors share one label mix: (statistic, p)."""
    table = np.vstack([a, b]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, chi2_sf(stat, table.shape[1] - 1)


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, asymptotic p) as in Numerical Recipes 14.3."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if not len(a) or not len(b):
        return 0.0, 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    d = float(np.abs(cdf_a - cdf_b).max())
    en = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    return d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mmd_permutation(
    x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Biased MMD^2 with an RBF kernel (median-heuristic bandwidth) on unit vectors, and its
    p-value under a gamma distribution fitted to the permutation null (Gretton et al. 2009):
    (MMD^2, p). All permutations cost one matrix product over the pooled kernel."""
    z = np.vstack([_unit(x), _unit(y)])
    n, m = len(x), len(z)
    sq = np.maximum(2 - 2 * (z @ z.T), 0)  # squared distances between unit vectors
    median = float(np.median(sq[np.triu_indices(m, 1)])) or 1.0
    k = np.exp(-sq / median)
    rng = np.random.default_rng(seed)
    signs = np.empty((m, permutations + 1), np.float32)
    signs[:, 0] = np.r_[np.full(n, 1.0 / n), np.full(m - n, -1.0 / (m - n))]
    for j in range(1, permutations + 1):
        signs[:, j] = rng.permutation(signs[:, 0])
    stats = np.einsum("ij,ij->j", signs, k @ signs)  # w^T K w per column = MMD^2
    observed, null = float(stats[0]), stats[1:].astype(np.float64)
    mean, var = float(null.mean()), float(null.var())
    if var <= 0 or mean <= 0:
        return observed, float((1 + (null >= observed).sum()) / (1 + permutations))
    shape, scale = mean * mean / var, var / mean
    return observed, _gammaq(shape, observed / scale)


# -- one check -------------------------------------------------------------------------


def check_window(
    source: str,
    task: str,
    model_version: str,
    probs: np.ndarray,
    embeddings: np.ndarray | None,
    profile: ReferenceProfile | None,
    th: DriftThresholds,
) -> DriftCheck:
    """The drift tests of one window of posts (`probs`: calibrated probabilities, one row a
    post) against the reference; "no reference" when the artifact has no profile."""
    posts = len(probs)
    estimated = float(probs.max(axis=1).mean()) if posts else None
    head: HeadReference | None = profile.heads.get(task) if profile else None
    if profile is None or head is None:
        return DriftCheck(source, task, model_version, posts, "no reference", estimated_accuracy=estimated)
    k = len(head.labels)
    live_counts = np.bincount(probs.argmax(axis=1), minlength=k) if posts else np.zeros(k, int)
    ref_counts = np.asarray(head.predicted_counts, np.float64)
    live_mix = live_counts / max(1, posts)
    ref_mix = ref_counts / max(1.0, ref_counts.sum())
    mixes = (
        dict(zip(head.labels, np.round(live_mix, 4).tolist(), strict=True)),
        dict(zip(head.labels, np.round(ref_mix, 4).tolist(), strict=True)),
    )
    base = DriftCheck(
        source, task, model_version, posts, profile.made_from, (), *mixes,
        estimated_accuracy=estimated, reference_accuracy=head.accuracy,
    )  # fmt: skip
    if posts < th.min_posts:
        return base
    use_embeddings = embeddings is not None and profile.embeddings is not None and len(embeddings) == posts
    per_test = th.alpha / (3 if use_embeddings else 2)  # Bonferroni over this check's tests
    _, p_mix = chi2_homogeneity(live_counts, ref_counts)
    tvd = total_variation(live_mix, ref_mix)
    d, p_conf = ks_2samp(probs.max(axis=1), np.asarray(head.confidences))
    tests = [
        TestResult("label_mix", round(tvd, 4), p_mix, p_mix < per_test and tvd >= th.min_tvd),
        TestResult("confidence", round(d, 4), p_conf, p_conf < per_test and d >= th.min_ks),
    ]
    if use_embeddings:
        assert embeddings is not None and profile.embeddings is not None
        rng = np.random.default_rng(0)
        ref = _subsample(profile.embeddings, th.embedding_sample, rng)
        live = _subsample(embeddings, th.embedding_sample, rng)
        mmd, p_emb = mmd_permutation(live, ref, th.permutations)
        tests.append(TestResult("embedding", round(mmd, 5), p_emb, p_emb < per_test and mmd >= th.min_mmd))
    return DriftCheck(
        base.source, task, model_version, posts, base.reference, tuple(tests), *mixes,
        estimated_accuracy=estimated, reference_accuracy=head.accuracy,
    )  # fmt: skip


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(rng.choice(len(x), n, replace=False))]


def reference_mix(head: HeadReference) -> Sequence[float]:
    total = max(1, sum(head.predicted_counts))
    return [c / total for c in head.predicted_counts]
