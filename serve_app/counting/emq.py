"""The SLD/EM prior estimate (Saerens, Latinne and Decaestecker 2002) for many weightings of
the same posts at once: the point estimate and the bootstrap draws of serve_app.counting.quantify.

EM maximises the likelihood of the posts' probabilities under a new label mix w:
    l(w) = sum_i c_i log(sum_k L_ik w_k),  L_ik = p_ik / prior_k,  sum_k w_k = 1, w >= 0,
where c_i is how often post i is drawn. The point estimate (one row) runs EM with SQUAREM
acceleration (Varadhan and Roland 2008) to convergence. The 1000 bootstrap rows start there
and take Newton steps with the Hessian of their group's own estimate (a chord method: one
small solve per group, then two matrix products per step); they move little, so a handful of
steps reach 1e-6, where plain EM would need hundreds of steps over every row.
Numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PROB_FLOOR = 1e-7
EM_CYCLES = 300  # SQUAREM cycles (three EM steps each) for the point estimates
EM_TOLERANCE = 1e-8
NEWTON_STEPS = 4
NEWTON_TOLERANCE = 1e-6
# A draw is done when one more EM step would move no share by more than this (0.01 share
# points, the answer's precision).
POLISH_TOLERANCE = 1e-4


def likelihood_ratios(probs: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """L = p / prior, per group: (g, n, k)."""
    return probs / np.maximum(priors[:, None, :], PROB_FLOOR)


def _squarem(step: Callable[[np.ndarray], np.ndarray], w: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """One SQUAREM cycle from w, given w1 = step(w): extrapolate along the two steps, then one
    more EM step. Converged rows (v ~ 0) take plain steps; the extrapolation is capped, and a
    jump off the simplex falls back to the plain steps."""
    w2 = step(w1)
    r, v = w1 - w, w2 - 2 * w1 + w
    rn = np.sqrt((r * r).sum(axis=-1, keepdims=True))
    vn = np.sqrt((v * v).sum(axis=-1, keepdims=True))
    alpha = np.where(vn > 1e-12, np.clip(-rn / np.maximum(vn, 1e-12), -50.0, -1.0), -1.0)
    jump = w - 2 * alpha * r + alpha * alpha * v
    ok = (jump >= 0).all(axis=-1, keepdims=True)
    return step(np.where(ok, jump, w2))


def _em_rows(lr: np.ndarray, weights: np.ndarray, start: np.ndarray, tolerance: float) -> np.ndarray:
    """EM with SQUAREM for each row: lr (m, n, k), weights (m, n), start (m, k) -> (m, k)."""
    n = np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)

    def step(w: np.ndarray) -> np.ndarray:
        # batched matrix products, not einsum: BLAS makes them ~10x faster here
        s = np.maximum((lr @ w[:, :, None])[:, :, 0], 1e-300)
        out: np.ndarray = w * ((weights / s)[:, None, :] @ lr)[:, 0, :] / n
        return out

    w = start.astype(np.float64).copy()
    for _ in range(EM_CYCLES):
        new = _squarem(step, w, step(w))
        done = float(np.abs(new - w).max()) < tolerance
        w = new
        if done:
            break
    return w


def em_point(probs: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """The EM estimate over all posts once each, per group: probs (g, n, k), priors (g, k)
    -> (g, k). Starts at the prior, as SLD does."""
    lr = likelihood_ratios(probs, priors)
    return _em_rows(lr, np.ones(probs.shape[:2]), priors, EM_TOLERANCE)


def _kkt_inverses(lr: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per group, the block of the inverse KKT matrix [[H, 1], [1', 0]] that maps a gradient
    to the Newton step on the simplex's plane; H: the log-likelihood's Hessian at the
    group's point estimate, per post (so a draw of n posts scales it by n)."""
    g, n, k = lr.shape
    s = np.maximum((lr @ points[:, :, None])[:, :, 0], 1e-300)
    scaled = lr / s[..., None]
    hess = -(np.swapaxes(scaled, 1, 2) @ scaled) / n
    kkt = np.zeros((g, k + 1, k + 1))
    kkt[:, :k, :k] = hess - 1e-9 * np.eye(k)  # a label no post supports stays solvable
    kkt[:, :k, k] = 1.0
    kkt[:, k, :k] = 1.0
    inv: np.ndarray = np.linalg.pinv(kkt)[:, :k, :k]
    return inv


def em_draws(probs: np.ndarray, weights: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """EM estimates for every row of `weights`: probs (g, n, k) per group, weights (g, d, n)
    (how often each post is drawn), priors (g, k) -> (g, d, k), each row on the simplex."""
    return em_draws_lr(likelihood_ratios(probs, priors), weights, priors)


def em_draws_lr(lr: np.ndarray, weights: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """`em_draws` from the likelihood ratios (g, n, k) of the posts: the caller need not keep
    the probabilities too (a long file's bootstrap holds a few (n, k) arrays at its peak)."""
    points = _em_rows(lr, np.ones(lr.shape[:2]), priors, EM_TOLERANCE)  # em_point's estimate
    step_map = _kkt_inverses(lr, points)
    lt = np.ascontiguousarray(np.swapaxes(lr, 1, 2))
    n = np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)
    w = np.broadcast_to(points[:, None, :], weights.shape[:2] + points.shape[-1:]).copy()
    for _ in range(NEWTON_STEPS):
        s = np.maximum(w @ lt, 1e-300)
        grad = (weights / s) @ lr / n
        new = w - grad @ step_map
        new = np.clip(new, 0.0, None)
        new /= np.maximum(new.sum(axis=-1, keepdims=True), 1e-300)
        done = float(np.abs(new - w).max()) < NEWTON_TOLERANCE
        w = new
        if done:
            break
    return _polish(lr, weights, w, lt)


_last_polished = [0]


def _polish(lr: np.ndarray, weights: np.ndarray, w: np.ndarray, lt: np.ndarray) -> np.ndarray:
    """Rows the Newton steps left short of EM's fixed point (a share near 0 bends the
    likelihood too much for the group's Hessian) finish with EM + SQUAREM; every row takes
    the grouped steps (two batched matrix products), until one more EM step would move no
    share by more than POLISH_TOLERANCE. `lt`: lr's axes 1 and 2 swapped, contiguous (the
    Newton steps' own, not copied again)."""
    n = np.maximum(weights.sum(axis=-1, keepdims=True), 1e-300)

    def step(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x * ((weights / np.maximum(x @ lt, 1e-300)) @ lr) / n
        return out

    cycles = 0
    for cycles in range(EM_CYCLES):  # noqa: B007 (the count is reported)
        w1 = step(w)
        if float(np.abs(w1 - w).max()) < POLISH_TOLERANCE:
            break
        w = _squarem(step, w, w1)
    _last_polished[0] = cycles
    return w
