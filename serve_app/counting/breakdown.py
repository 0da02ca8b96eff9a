"""Label shares of a set of posts (the breakdown), their error and their 95 % intervals.

Three ways to turn per-post probabilities into shares (the literature calls it
quantification; Forman 2008, Bella et al. 2010):
- `cc`: classify and count, the share of posts whose top label is each label;
- `pcc`: probabilistic classify and count, the mean of the posts' calibrated probabilities;
- `pacc`: PCC adjusted by the model's mean probability matrix on labelled validation data
  (row i: the mean probabilities given to texts whose true label is i), solved for the true
  shares by non-negative least squares.
Training measures each on validation data and the artifact names the one to serve.

Intervals: a bootstrap over posts (posts resampled with replacement, the shares recomputed
with the same method), percentiles 2.5 and 97.5. It covers the sampling of posts, not the
model's own error, which the validation TVD in the model card measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("cc", "pcc", "pacc")
BOOTSTRAP_SAMPLES = 1000


class BreakdownError(ValueError):
    """A counting method or adjustment matrix that cannot be used."""


def label_shares(labels: Sequence[int] | np.ndarray, n_labels: int) -> np.ndarray:
    """The share of each label among `labels` (ids); zeros for an empty list."""
    arr = np.asarray(labels, dtype=np.int64)
    if arr.size == 0:
        return np.zeros(n_labels)
    return np.bincount(arr, minlength=n_labels)[:n_labels] / arr.size


def tvd(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """Total-variation distance between two share vectors: 0 identical, 1 disjoint."""
    return float(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum() / 2)


def breakdown_tvd(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> float:
    return tvd(label_shares(y_true, n_labels), label_shares(y_pred, n_labels))


def fit_adjustment(probs: np.ndarray, y_true: Sequence[int] | np.ndarray) -> list[list[float]]:
    """Mean predicted probabilities per true label (rows), for `pacc`; a label absent from
    the data keeps an identity row (no adjustment for it)."""
    y = np.asarray(y_true)
    k = probs.shape[1]
    m = np.eye(k)
    for i in range(k):
        if (y == i).any():
            m[i] = probs[y == i].mean(axis=0)
    return m.tolist()


def _nnls_simplex(m: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Shares x >= 0 summing to 1 that minimise |x m - observed|, for each row of `observed`
    at once (projected gradient descent; k is a handful of labels)."""
    x = np.full(observed.shape, 1.0 / m.shape[0])
    step = 1.0 / max(float(np.linalg.norm(m, 2) ** 2), 1e-9)
    for _ in range(500):
        x = _project_simplex(x - step * (x @ m - observed) @ m.T)
    return x


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of `v` onto the probability simplex."""
    k = v.shape[-1]
    u = np.sort(v, axis=-1)[..., ::-1]
    css = np.cumsum(u, axis=-1)
    cond = u * np.arange(1, k + 1) > (css - 1)
    rho = k - 1 - np.argmax(cond[..., ::-1], axis=-1)
    theta = (np.take_along_axis(css, rho[..., None], axis=-1) - 1) / (rho[..., None] + 1.0)
    return np.maximum(v - theta, 0.0)


def estimate_shares(
    probs: np.ndarray, method: str = "pcc", adjustment: Sequence[Sequence[float]] | None = None
) -> np.ndarray:
    """Label shares of the posts whose probabilities are the rows of `probs`."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    if len(probs) == 0:
        return np.zeros(k)
    if method == "cc":
        return label_shares(probs.argmax(axis=1), k)
    if method == "pcc":
        return probs.mean(axis=0)
    if method == "pacc":
        if adjustment is None:
            raise BreakdownError("pacc needs the artifact's adjustment matrix; retrain or serve pcc")
        return _nnls_simplex(np.asarray(adjustment, dtype=np.float64), probs.mean(axis=0))
    raise BreakdownError(f"unknown counting method {method!r}; use one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class Breakdown:
    """Shares over all posts with 95 % intervals; and, when the labels include a `rest`
    label (neutral), the other labels' shares among the posts that carry one of them."""

    shares: np.ndarray
    low: np.ndarray
    high: np.ndarray
    among: np.ndarray | None = None
    among_low: np.ndarray | None = None
    among_high: np.ndarray | None = None


def _among(shares: np.ndarray, rest: int) -> np.ndarray:
    """Shares without label `rest`, renormalised (rows: bootstrap samples or one vector)."""
    kept = np.delete(shares, rest, axis=-1)
    total = kept.sum(axis=-1, keepdims=True)
    return np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)


def breakdown(
    probs: np.ndarray,
    method: str = "pcc",
    adjustment: Sequence[Sequence[float]] | None = None,
    rest: int | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Breakdown:
    """Shares and bootstrap intervals. The seed is fixed so the same posts always get the
    same interval (answers are cached and compared)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    shares = estimate_shares(probs, method, adjustment)
    if n == 0:
        zero = np.zeros(k)
        among0 = None if rest is None else np.zeros(k - 1)
        return Breakdown(zero, zero, zero, among0, among0, among0)
    rng = np.random.default_rng(seed)
    # Resample weights (samples, n): how often each post is drawn in each resample. Drawn as
    # indices and counted, ~10x faster than an n-way multinomial and the same distribution.
    drawn = rng.integers(0, n, size=(samples, n)) + n * np.arange(samples)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=samples * n).reshape(samples, n)
    if method == "cc":
        onehot = np.eye(k)[probs.argmax(axis=1)]
        boot = counts @ onehot / n
    else:
        boot = counts @ probs / n
        if method == "pacc":
            m = np.asarray(adjustment, dtype=np.float64)
            boot = _nnls_simplex(m, boot)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    if rest is None:
        return Breakdown(shares, low, high)
    among_boot = _among(boot, rest)
    a_low, a_high = np.percentile(among_boot, [2.5, 97.5], axis=0)
    return Breakdown(shares, low, high, _among(shares, rest), a_low, a_high)
