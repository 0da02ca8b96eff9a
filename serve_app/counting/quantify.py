"""Counting that survives a shifted label mix, with 95 % intervals that include the model's error.

A keyword's posts never have the label mix the model was trained or calibrated at, and the
plain share of top labels (`cc`) is biased toward that mix. Methods (quantification):
- `cc`: classify and count; `pcc`: the mean calibrated probability;
- `acc` / `pacc`: cc / pcc adjusted by the model's confusion measured on labelled in-domain
  data (row i: what texts of true label i get on average), solved for the true shares;
- `emq`: Saerens-Latinne-Decaestecker EM re-estimation of the prior on probabilities
  recalibrated on in-domain data (a scale and a bias per label on the log-probabilities).

Intervals resample the posts AND the data the method was fitted on: the artifact stores
`resampled` fits (bootstrap resamples of the fitting data, made at fit time), and each
bootstrap draw over the posts uses one of them, so the spread includes the fit's own error.
Shares are kept in [0, 1] (summing to 1) and every interval contains its estimate.
Numpy only: this runs in the Aggregator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Protocol

import numpy as np

from serve_app.counting.breakdown import BreakdownError, label_shares
from serve_app.counting.emq import PROB_FLOOR, em_draws_lr, em_point, likelihood_ratios

METHODS = ("cc", "pcc", "acc", "pacc", "emq")
ADJUSTED = ("acc", "pacc")
BOOTSTRAP_SAMPLES = 500  # percentiles 2.5 and 97.5: the 13th value from each end

Vector = tuple[float, ...]
Matrix = tuple[Vector, ...]


@dataclass(frozen=True)
class Recalibration:
    """Probabilities recalibrated for EM: softmax(scale * log p + bias)."""

    scale: float = 1.0
    bias: Vector = ()

    def apply(self, probs: np.ndarray) -> np.ndarray:
        z = self.scale * np.log(np.maximum(np.asarray(probs, dtype=np.float64), PROB_FLOOR))
        if self.bias:
            z = z + np.asarray(self.bias)
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
        return out


@dataclass(frozen=True)
class Counting:
    """How a task's breakdown is counted: the method and what it was fitted to (from the
    artifact's `labels.json`, `heads.<task>.breakdown`)."""

    method: str = "cc"
    adjustment: Matrix | None = None  # acc / pacc: fitted on all the fitting data
    resampled: tuple[Matrix, ...] = ()  # acc / pacc: fitted on bootstrap resamples of it
    prior: Vector | None = None  # emq: the label mix the recalibrated probabilities assume
    resampled_priors: tuple[Vector, ...] = ()
    recalibration: Recalibration | None = None
    resampled_recalibrations: tuple[Recalibration, ...] = field(default=())
    # Added to each side of every interval (share points, 0-1): fitted on validation so the
    # shifted-mix protocol's coverage reaches 95 % (the bootstrap alone falls short where a
    # share is near 0 and its draws pile up at the boundary).
    interval_margin: float = 0.0

    @property
    def resamples(self) -> int:
        return len(self.resampled) or len(self.resampled_priors)


class ServedHead(Protocol):
    """What the Classifier says about a task's model (records.TaskModel)."""

    @property
    def breakdown_method(self) -> str: ...
    @property
    def adjustment(self) -> Matrix | None: ...
    @property
    def counting(self) -> Counting | None: ...


def served_counting(head: ServedHead) -> Counting:
    """The head's full fit, or (a model described before fits were stored) its method and
    adjustment alone."""
    return head.counting or Counting(head.breakdown_method, head.adjustment)


def _vector(x: object) -> Vector:
    return tuple(float(v) for v in x)  # type: ignore[attr-defined]


def _matrix(x: object) -> Matrix:
    return tuple(_vector(row) for row in x)  # type: ignore[attr-defined]


def _recal(x: Mapping[str, object]) -> Recalibration:
    return Recalibration(float(x.get("scale", 1.0)), _vector(x.get("bias", ())))  # type: ignore[arg-type]


def counting_from_spec(spec: Mapping[str, object]) -> Counting:
    """A `Counting` from an artifact's `breakdown` section (older artifacts: method and
    adjustment only; their intervals then cover the posts alone)."""
    method = str(spec.get("method", "cc"))
    if method not in METHODS:
        raise BreakdownError(f"unknown counting method {method!r} in the artifact; use one of {METHODS}")
    res = spec.get("resampled") or {}
    assert isinstance(res, Mapping)
    adj, prior, recal = spec.get("adjustment"), spec.get("prior"), spec.get("recalibration")
    return Counting(
        method=method,
        adjustment=None if adj is None else _matrix(adj),
        resampled=tuple(_matrix(m) for m in res.get("adjustment", ())),
        prior=None if prior is None else _vector(prior),
        resampled_priors=tuple(_vector(p) for p in res.get("prior", ())),
        recalibration=None if recal is None else _recal(recal),  # type: ignore[arg-type]
        resampled_recalibrations=tuple(_recal(r) for r in res.get("recalibration", ())),
        interval_margin=float(spec.get("interval_margin", 0.0)),  # type: ignore[arg-type]
    )


def to_simplex(x: np.ndarray) -> np.ndarray:
    """Clip negative shares and renormalise each row to sum to 1 (a row that is all <= 0
    becomes uniform): adjusted counting can step outside the simplex."""
    x = np.clip(x, 0.0, None)
    total = x.sum(axis=-1, keepdims=True)
    k = x.shape[-1]
    return np.divide(x, total, out=np.full_like(x, 1.0 / k), where=total > 0)


@lru_cache(maxsize=32)
def _inverses(matrices: tuple[Matrix, ...]) -> np.ndarray:
    """Pseudo-inverses of adjustment matrices (cached: the artifact's are fixed)."""
    return np.linalg.pinv(np.asarray(matrices, dtype=np.float64))


def _adjust(observed: np.ndarray, matrices: tuple[Matrix, ...]) -> np.ndarray:
    """Solve shares @ M = observed for each row of `observed` (rows split evenly over the
    matrices: draw b uses matrix b * len(matrices) // rows), then back onto the simplex."""
    inv = _inverses(matrices)
    r = len(matrices)
    b = observed.shape[0]
    if b % r:
        raise BreakdownError(f"{b} draws cannot be split over {r} resampled fits")
    grouped = observed.reshape(r, b // r, -1) @ inv
    return to_simplex(grouped.reshape(b, -1))


def _emq(probs: np.ndarray, weights: np.ndarray, counting: Counting, resampled: bool) -> np.ndarray:
    """EMQ shares for each row of `weights` (d, n); with `resampled`, rows are split evenly
    over the stored resampled recalibrations and priors (serve_app.counting.emq)."""
    if counting.prior is None:
        raise BreakdownError(
            "emq needs the artifact's prior; re-fit counting (`emotion-monitor model counting`)"
        )
    if resampled and counting.resampled_priors:
        recals = counting.resampled_recalibrations or (counting.recalibration or Recalibration(),) * len(
            counting.resampled_priors
        )
        priors = np.asarray(counting.resampled_priors)
    else:
        recals = (counting.recalibration or Recalibration(),)
        priors = np.asarray([counting.prior])
    g = len(recals)
    if weights.shape[0] % g:
        raise BreakdownError(f"{weights.shape[0]} draws cannot be split over {g} resampled fits")
    p = np.stack([r.apply(probs) for r in recals])
    if not resampled and weights.shape[0] == 1 and bool((weights == 1).all()):
        return to_simplex(em_point(p, priors))
    # The ratios, not the probabilities, go on: one (g, n, k) array fewer held at the peak.
    lr = likelihood_ratios(p, priors)
    del p
    out = em_draws_lr(lr, weights.reshape(g, weights.shape[0] // g, -1), priors)
    return to_simplex(out.reshape(weights.shape[0], -1))


def _shares(probs: np.ndarray, weights: np.ndarray, counting: Counting, resampled: bool) -> np.ndarray:
    """Shares for each row of `weights` (d, n): how often each post counts in that row."""
    k = probs.shape[1]
    n = weights.sum(axis=1, keepdims=True)
    method = counting.method
    if method == "emq":
        return _emq(probs, weights, counting, resampled)
    cc = method in ("cc", "acc")
    basis = np.eye(k)[probs.argmax(axis=1)] if cc else probs.astype(np.float64, copy=False)
    observed = weights @ basis / np.maximum(n, 1e-300)
    if method in ("cc", "pcc"):
        return observed
    if method not in ADJUSTED:
        raise BreakdownError(f"unknown counting method {method!r}; use one of {', '.join(METHODS)}")
    if counting.adjustment is None:
        raise BreakdownError(f"{method} needs the artifact's adjustment matrix; re-fit counting or serve pcc")
    matrices = counting.resampled if resampled and counting.resampled else (counting.adjustment,)
    return _adjust(observed, matrices)


def _exact(probs: np.ndarray) -> np.ndarray:
    """float64 probabilities, or float32 ones as they are (a file's: float32 -> float64 is
    exact, so each step widens what it reads, and no (n, k) float64 copy is held throughout)."""
    if isinstance(probs, np.ndarray) and probs.dtype == np.float32:
        return probs
    return np.asarray(probs, dtype=np.float64)


def estimate(probs: np.ndarray, counting: Counting) -> np.ndarray:
    """Label shares of the posts whose probabilities are the rows of `probs`."""
    probs = _exact(probs)
    if len(probs) == 0:
        return np.zeros(probs.shape[1])
    if counting.method == "cc":  # exact, so a share is count / posts
        return label_shares(probs.argmax(axis=1), probs.shape[1])
    return _shares(probs, np.ones((1, len(probs))), counting, resampled=False)[0]


def bootstrap_weights(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """(samples, n): how often each post is drawn in each resample. Drawn as indices and
    counted, ~10x faster than an n-way multinomial and the same distribution."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(samples, n)) + n * np.arange(samples)[:, None]
    return np.bincount(drawn.ravel(), minlength=samples * n).reshape(samples, n).astype(np.float64)


# Resample weights held at once: (samples, n) in one piece is 1,000 x n x 8 bytes (~800 MB,
# three times over while drawn) for a 100,000-text file (`emotion-monitor analyze --file`).
# cc and pcc draws are independent rows, so they go a block of resamples at a time; up to
# 2,000 posts that is one block, as before. (The adjusted methods split their rows over
# resampled fits and keep the one-piece path.)
_BLOCK_CELLS = 2_000_000


def _draws(probs: np.ndarray, samples: int, seed: int, counting: Counting) -> np.ndarray:
    """`_shares` of each bootstrap resample: the same numbers in blocks as in one piece (the
    generator's stream does not depend on how many rows are drawn at once)."""
    n = len(probs)
    groups = len(counting.resampled_priors)
    emq_blocks = counting.method == "emq" and groups > 0 and samples % groups == 0
    if not (counting.method in ("cc", "pcc") or emq_blocks) or samples * n <= _BLOCK_CELLS:
        return _shares(probs, bootstrap_weights(n, samples, seed), counting, resampled=True)
    rng = np.random.default_rng(seed)
    if emq_blocks:
        # EM holds (rows, n, labels) at once: whole groups of rows (one resampled fit each),
        # as few as keep that near the block size.
        per = samples // groups
        step = max(1, _BLOCK_CELLS // (per * n * probs.shape[1]))
        ends = [min(groups, g + step) for g in range(0, groups, step)]
        plan = [(g * per, e * per, g, e) for g, e in zip(range(0, groups, step), ends, strict=True)]
        sub = max(1, _BLOCK_CELLS // (n * probs.shape[1]))
        if sub < per:
            # One fit's rows alone pass the block size (files of ~10,000+ texts): split them,
            # so memory stays flat however long the file (EM then stops per sub-block).
            plan = [
                (g * per + a, g * per + min(per, a + sub), g, g + 1)
                for g in range(groups)
                for a in range(0, per, sub)
            ]
    else:
        block = max(1, _BLOCK_CELLS // n)
        plan = [(a, min(samples, a + block), 0, 0) for a in range(0, samples, block)]
    parts = []
    for start, stop, g0, g1 in plan:
        rows = stop - start
        drawn = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        part = (
            counting
            if not emq_blocks
            else replace(
                counting,
                resampled_priors=counting.resampled_priors[g0:g1],
                resampled_recalibrations=counting.resampled_recalibrations[g0:g1],
            )
        )
        parts.append(_shares(probs, weights, part, resampled=True))
    return np.concatenate(parts)


@dataclass(frozen=True)
class Quantified:
    """Shares with 95 % intervals, the bootstrap draws they came from (rows: draws), and,
    with a rest label, the other labels' shares among the posts that carry one of them."""

    shares: np.ndarray
    low: np.ndarray
    high: np.ndarray
    draws: np.ndarray
    among: np.ndarray | None = None
    among_low: np.ndarray | None = None
    among_high: np.ndarray | None = None


def among(shares: np.ndarray, rest: int) -> np.ndarray:
    """Shares without label `rest`, renormalised (rows: draws or one vector)."""
    kept = np.delete(shares, rest, axis=-1)
    total = kept.sum(axis=-1, keepdims=True)
    return np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)


def interval(point: np.ndarray, draws: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles 2.5 and 97.5 of the draws, widened to hold the estimate itself and by
    `margin` on each side, within [0, 1]."""
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    low, high = np.minimum(low, point) - margin, np.maximum(high, point) + margin
    return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)


def quantify(
    probs: np.ndarray,
    counting: Counting,
    rest: int | None = None,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Quantified:
    """Shares and intervals over posts and fits. The seed is fixed so the same posts always
    get the same interval (answers are cached and compared)."""
    probs = _exact(probs)
    n, k = probs.shape
    if n == 0:
        zero, z1 = np.zeros(k), None if rest is None else np.zeros(k - 1)
        return Quantified(zero, zero, zero, np.zeros((0, k)), z1, z1, z1)
    shares = estimate(probs, counting)
    r = max(1, counting.resamples) if counting.method in ("acc", "pacc", "emq") else 1
    samples = max(r, samples - samples % r)
    draws = _draws(probs, samples, seed, counting)
    low, high = interval(shares, draws, counting.interval_margin)
    if rest is None:
        return Quantified(shares, low, high, draws)
    a_point = among(shares, rest)
    a_low, a_high = interval(a_point, among(draws, rest), counting.interval_margin)
    return Quantified(shares, low, high, draws, a_point, a_low, a_high)


def net_sentiment(
    shares: Sequence[float] | np.ndarray,
    draws: np.ndarray,
    labels: Sequence[str],
    positive: str = "positive",
    negative: str = "negative",
) -> tuple[float, float, float]:
    """(value, low, high): (positive - negative) / (positive + negative) in [-1, 1] from
    sentiment shares, with the 95 % interval of the same bootstrap draws (rows of `draws`,
    columns in `labels` order). 0 when neither label has a share."""
    pos, neg = list(labels).index(positive), list(labels).index(negative)

    def net(x: np.ndarray) -> np.ndarray:
        total = x[..., pos] + x[..., neg]
        return np.divide(x[..., pos] - x[..., neg], total, out=np.zeros_like(total), where=total > 0)

    value = net(np.asarray(shares, dtype=np.float64))
    d = np.asarray(draws, dtype=np.float64)
    if d.size == 0:
        return float(value), float(value), float(value)
    low, high = np.percentile(net(d), [2.5, 97.5])
    v = float(value)
    return v, float(np.clip(min(low, v), -1, 1)), float(np.clip(max(high, v), -1, 1))
