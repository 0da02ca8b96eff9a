"""The artificial-prevalence protocol: how far the served breakdown is from the truth when
the label mix moves, and how often its 95 % intervals hold the true share (numpy only).

Draw samples of n texts at a label mix, count them with each method, compare with the
sample's true shares (TVD), and check each label's interval. Mixes come from
- `uniform`: a Dirichlet with alpha = 1 over the file's labels (every mix equally likely);
- `natural`: a Dirichlet with concentration 20 around the file's own mix.
Texts are drawn per label, with replacement, from one fold of the file while the method is
fitted on the others (cross-fitting: no text both fits and scores), unless a served fit is
given (then every text may be drawn and the fit is the artifact's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from serve_app.counting.breakdown import label_shares, tvd
from serve_app.counting.quantify import Counting, estimate, quantify
from training.counting import RESAMPLES, fit_counting

PROTOCOLS = ("uniform", "natural")
NATURAL_CONCENTRATION = 20.0
DEFAULT_DRAWS = 500
FOLDS = 5


MARGINS = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02)


@dataclass(frozen=True)
class ShiftScore:
    """One method under one protocol and sample size."""

    mean_tvd: float
    p90_tvd: float
    coverage: float  # share of (label, sample) pairs whose true share is inside the interval
    mean_width: float  # mean interval width, share points (0-1), over labels and samples
    draws: int
    # Coverage and width with a margin added to each side of the bootstrap interval.
    coverage_by_margin: dict[float, float]
    width_by_margin: dict[float, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def draw_mix(protocol: str, base: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A label mix over the labels in `present` (others 0)."""
    k = len(base)
    alpha = np.ones(len(present)) if protocol == "uniform" else NATURAL_CONCENTRATION * base[present]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    mix = np.zeros(k)
    mix[present] = rng.dirichlet(alpha)
    return mix


def draw_sample(
    by_label: Sequence[np.ndarray], mix: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of n texts: label counts from the mix, texts drawn with replacement. A label
    with no text here (a tiny set's fold) gets none: its share goes to the others."""
    have = np.array([len(idx) > 0 for idx in by_label])
    mix = np.where(have, mix, 0.0)
    if mix.sum() <= 0:
        raise ValueError("no labelled texts to draw a sample from")
    counts = rng.multinomial(n, mix / mix.sum())
    return np.concatenate([rng.choice(idx, size=c) for idx, c in zip(by_label, counts, strict=True) if c > 0])


def _fold_ids(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Each text's fold, stratified by label so every fold holds every label."""
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % folds
    return fold


@dataclass
class _Tally:
    margins: Sequence[float]
    served_margin: float
    tvds: list[float] = field(default_factory=list)
    hits: dict[float, int] = field(default_factory=dict)
    width: dict[float, float] = field(default_factory=dict)
    pairs: int = 0

    def add(self, est: np.ndarray, low: np.ndarray, high: np.ndarray, true: np.ndarray) -> None:
        """`low`, `high`: the interval without any margin."""
        self.tvds.append(tvd(est, true))
        self.pairs += len(true)
        for m in {*self.margins, self.served_margin}:
            lo, hi = np.clip(low - m, 0.0, 1.0), np.clip(high + m, 0.0, 1.0)
            self.hits[m] = self.hits.get(m, 0) + int(((true >= lo - 1e-9) & (true <= hi + 1e-9)).sum())
            self.width[m] = self.width.get(m, 0.0) + float((hi - lo).sum())

    def score(self) -> ShiftScore:
        t = np.asarray(self.tvds)
        pairs = max(self.pairs, 1)
        cov = {m: self.hits[m] / pairs for m in sorted(self.hits)}
        wid = {m: self.width[m] / pairs for m in sorted(self.width)}
        m = self.served_margin
        return ShiftScore(float(t.mean()), float(np.percentile(t, 90)), cov[m], wid[m], len(t), cov, wid)


def shift_protocol(
    probs: np.ndarray,
    y: Sequence[int] | np.ndarray,
    methods: Sequence[str],
    n: int = 250,
    draws: int = DEFAULT_DRAWS,
    protocols: Sequence[str] = PROTOCOLS,
    seed: int = 0,
    served: dict[str, Counting] | None = None,
    fits: dict[tuple[str, int], Counting] | None = None,
    resamples: int = RESAMPLES,
) -> dict[str, dict[str, ShiftScore]]:
    """{protocol: {method: ShiftScore}} over `draws` samples of `n` texts per protocol.

    Cross-fitted over FOLDS (draws split evenly over the held-out folds; the folds do not
    depend on `seed`, so `fits`, a cache by (method, fold), serves several calls), or, with
    `served`, each method's given fit on every text. Coverage is of the fit's own interval
    (its margin), and of the bootstrap interval with each of MARGINS."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    k = probs.shape[1]
    rng = np.random.default_rng(seed)
    base = label_shares(y, k)
    present = np.flatnonzero(base > 0)
    fits = {} if fits is None else fits
    fold = _fold_ids(y, FOLDS, np.random.default_rng(0)) if served is None else np.zeros(len(y), np.int64)
    parts = 1 if served is not None else FOLDS
    margin = {m: served[m].interval_margin if served else 0.0 for m in methods}
    tallies = {p: {m: _Tally(MARGINS, margin[m]) for m in methods} for p in protocols}
    for f in range(parts):
        held = np.flatnonzero(fold == f)
        fit_idx = np.flatnonzero(fold != f)
        for m in methods:
            if served is None and (m, f) not in fits:
                fits[(m, f)] = fit_counting(probs[fit_idx], y[fit_idx], m, resamples, seed=f)
        by_label = [held[y[held] == c] for c in range(k)]
        for proto in protocols:
            for _ in range(draws // parts):
                idx = draw_sample(by_label, draw_mix(proto, base, present, rng), n, rng)
                true = label_shares(y[idx], k)
                for m in methods:
                    fit = served[m] if served else fits[(m, f)]
                    q = quantify(probs[idx], replace(fit, interval_margin=0.0))
                    tallies[proto][m].add(q.shares, q.low, q.high, true)
    return {p: {m: t.score() for m, t in ms.items()} for p, ms in tallies.items()}


def whole_set_tvd(
    probs: np.ndarray, y: Sequence[int] | np.ndarray, methods: Sequence[str]
) -> dict[str, float]:
    """TVD of each method on the file at its natural mix, cross-fitted: each fold counted
    with the fit on the other folds, the folds' TVDs averaged (a fold is a fifth of the file,
    so this is noisier than one count of the whole file; `cc` needs no fit and is also
    measured on the whole file by the evaluation)."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    k = probs.shape[1]
    fold = _fold_ids(y, FOLDS, np.random.default_rng(0))
    out: dict[str, float] = {}
    for m in methods:
        tvds = []
        for f in range(FOLDS):
            held, fit_idx = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
            fit = fit_counting(probs[fit_idx], y[fit_idx], m, resamples=0, seed=f)
            tvds.append(tvd(estimate(probs[held], fit), label_shares(y[held], k)))
        out[m] = float(np.mean(tvds))
    return out
