"""Fitting the counting methods of serve_app.counting.quantify on labelled in-domain data (numpy only).

A fit stores what serving needs: the adjustment matrix (acc, pacc) or the recalibration and
prior (emq), each also fitted on `resamples` bootstrap resamples of the fitting data, so
serving can draw intervals that include the fit's own error without refitting anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from serve_app.counting.quantify import METHODS, Counting, Matrix, Recalibration, Vector

RESAMPLES = 50  # stored resampled fits; serving splits its 1000 draws evenly over them


class ResampledSpec(TypedDict, total=False):
    adjustment: list[list[list[float]]]
    prior: list[list[float]]
    recalibration: list[dict[str, object]]


class CountingSpec(TypedDict, total=False):
    """A head's `breakdown` section in labels.json (what `counting_from_spec` reads)."""

    method: str
    adjustment: list[list[float]]
    prior: list[float]
    recalibration: dict[str, object]
    resampled: ResampledSpec
    interval_margin: float
    selected_by: str
    measured_on: list[str]


def fit_matrix(probs: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Row i: the mean top-label one-hot (acc) or probabilities (pacc) of texts of true label
    i; a label absent from the data keeps an identity row (no adjustment for it)."""
    k = probs.shape[1]
    basis = np.eye(k)[probs.argmax(axis=1)] if method == "acc" else probs
    m = np.eye(k)
    for i in range(k):
        if (y == i).any():
            m[i] = basis[y == i].mean(axis=0)
    return m


def fit_recalibration(probs: np.ndarray, y: np.ndarray, steps: int = 300) -> Recalibration:
    """A scale and a bias per label on the log-probabilities that minimise the negative log
    likelihood of the true labels (bias-corrected temperature scaling: EM needs
    probabilities calibrated on the data whose prior it starts from). Adam, full batch."""
    logp = np.log(np.maximum(probs, 1e-7))
    k = probs.shape[1]
    onehot = np.eye(k)[y]
    present = onehot.any(axis=0)
    theta = np.concatenate([[1.0], np.zeros(k)])
    m1, m2 = np.zeros_like(theta), np.zeros_like(theta)
    lr, b1, b2 = 0.05, 0.9, 0.999
    for t in range(1, steps + 1):
        z = theta[0] * logp + theta[1:]
        z -= z.max(axis=1, keepdims=True)
        q = np.exp(z)
        q /= q.sum(axis=1, keepdims=True)
        dz = (q - onehot) / len(y)
        grad = np.concatenate([[float((dz * logp).sum())], dz.sum(axis=0)])
        grad[1:][~present] = 0.0  # no data, no evidence to move that label's bias
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad**2
        theta -= lr * (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + 1e-8)
    bias = theta[1:] - theta[1:].mean()
    return Recalibration(float(theta[0]), tuple(float(b) for b in bias))


def _prior(y: np.ndarray, k: int) -> np.ndarray:
    # A label absent from the fitting data keeps a small prior so EM can still find it.
    return np.maximum(np.bincount(y, minlength=k)[:k] / max(len(y), 1), 1e-4)


def _fit_once(
    probs: np.ndarray, y: np.ndarray, method: str
) -> tuple[np.ndarray | None, np.ndarray | None, Recalibration | None]:
    if method in ("acc", "pacc"):
        return fit_matrix(probs, y, method), None, None
    if method == "emq":
        return None, _prior(y, probs.shape[1]), fit_recalibration(probs, y)
    return None, None, None


def _mat(m: np.ndarray) -> Matrix:
    return tuple(tuple(float(x) for x in row) for row in m)


def _vec(v: np.ndarray) -> Vector:
    return tuple(float(x) for x in v)


def stratified_resample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a bootstrap resample that keeps each label's count (the class-conditional
    behaviour is what is uncertain; the fitting data's mix is a choice)."""
    parts = [rng.choice(idx, size=len(idx)) for idx in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.concatenate(parts)


def fit_counting(
    probs: np.ndarray, y: Sequence[int] | np.ndarray, method: str, resamples: int = RESAMPLES, seed: int = 0
) -> Counting:
    """Fit `method` on (probs, y), and on `resamples` bootstrap resamples of them."""
    if method not in METHODS:
        raise ValueError(f"unknown counting method {method!r}; use one of {', '.join(METHODS)}")
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if method in ("cc", "pcc"):
        return Counting(method)
    rng = np.random.default_rng(seed)
    m, prior, recal = _fit_once(probs, y, method)
    ms, priors, recals = [], [], []
    for _ in range(resamples):
        # emq: a plain bootstrap, so the prior's own sampling error is in the draws too.
        idx = stratified_resample(y, rng) if method != "emq" else rng.integers(0, len(y), len(y))
        rm, rp, rr = _fit_once(probs[idx], y[idx], method)
        ms.append(rm)
        priors.append(rp)
        recals.append(rr)
    if method == "emq":
        assert prior is not None and recal is not None
        return Counting(
            method,
            prior=_vec(prior),
            recalibration=recal,
            resampled_priors=tuple(_vec(p) for p in priors if p is not None),
            resampled_recalibrations=tuple(r for r in recals if r is not None),
        )
    assert m is not None
    return Counting(method, adjustment=_mat(m), resampled=tuple(_mat(x) for x in ms if x is not None))


def counting_spec(c: Counting) -> CountingSpec:
    """The artifact form of a fit (labels.json `heads.<task>.breakdown`, merged with the
    report fields the caller adds)."""
    spec: CountingSpec = {"method": c.method}
    res: ResampledSpec = {}
    if c.adjustment is not None:
        spec["adjustment"] = [list(r) for r in c.adjustment]
        res["adjustment"] = [[list(r) for r in m] for m in c.resampled]
    if c.prior is not None:
        spec["prior"] = list(c.prior)
        res["prior"] = [list(p) for p in c.resampled_priors]
    if c.recalibration is not None:
        spec["recalibration"] = {"scale": c.recalibration.scale, "bias": list(c.recalibration.bias)}
        res["recalibration"] = [{"scale": r.scale, "bias": list(r.bias)} for r in c.resampled_recalibrations]
    if res:
        spec["resampled"] = res
    if c.interval_margin:
        spec["interval_margin"] = c.interval_margin
    return spec
