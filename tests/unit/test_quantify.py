"""Counting under a shifted label mix and intervals that include the fit's error
(serve_app.counting.quantify, serve_app.counting.emq, training.counting, training.shift) on synthetic data
whose truth is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from serve_app.counting.breakdown import label_shares, tvd
from serve_app.counting.emq import em_draws, em_point
from serve_app.counting.quantify import (
    METHODS,
    Counting,
    bootstrap_weights,
    counting_from_spec,
    estimate,
    net_sentiment,
    quantify,
)
from training.counting import counting_spec, fit_counting
from training.shift import shift_protocol

pytestmark = pytest.mark.unit

K = 4
TRAIN_MIX = np.array([0.1, 0.1, 0.2, 0.6])


def _texts(n: int, mix: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A classifier that is right ~65 % of the time, its probabilities calibrated for
    TRAIN_MIX (as a model trained there would be): the truth is known per text."""
    rng = np.random.default_rng(seed)
    y = rng.choice(K, size=n, p=mix)
    logits = rng.normal(0.0, 1.0, (n, K))
    logits[np.arange(n), y] += 1.6
    p = np.exp(logits) * TRAIN_MIX
    return p / p.sum(axis=1, keepdims=True), y


@pytest.fixture(scope="module")
def fits() -> dict[str, Counting]:
    probs, y = _texts(3000, TRAIN_MIX, seed=1)
    return {m: fit_counting(probs, y, m, resamples=10, seed=0) for m in METHODS}


def test_adjusted_methods_recover_a_shifted_mix_that_counting_misses(fits: dict[str, Counting]) -> None:
    shifted = np.array([0.45, 0.25, 0.2, 0.1])  # far from the training mix
    probs, y = _texts(20000, shifted, seed=2)
    true = label_shares(y, K)
    err = {m: tvd(estimate(probs, f), true) for m, f in fits.items()}
    assert err["cc"] > 0.12 and err["pcc"] > 0.12  # biased toward the training mix
    for m in ("acc", "pacc", "emq"):
        assert err[m] < 0.03, (m, err)


@pytest.mark.parametrize("method", METHODS)
def test_shares_stay_in_range_and_every_interval_holds_its_estimate(
    fits: dict[str, Counting], method: str
) -> None:
    rng = np.random.default_rng(3)
    cases = [
        _texts(250, np.array([0.0, 0.0, 0.0, 1.0]), seed=4)[0],  # one label only
        _texts(3, TRAIN_MIX, seed=5)[0],
        np.eye(K)[rng.integers(0, K, 40)],  # hard 0/1 probabilities
        np.tile([1.0, 0.0, 0.0, 0.0], (30, 1)),  # shares pushed to the boundary
    ]
    for probs in cases:
        q = quantify(probs, fits[method], rest=3)
        for shares, low, high in ((q.shares, q.low, q.high), (q.among, q.among_low, q.among_high)):
            assert shares is not None and low is not None and high is not None
            assert np.all(shares >= 0) and np.all(shares <= 1)
            # (the shares among the emotional posts are all 0 when no post has one)
            assert shares.sum() == pytest.approx(1.0) or shares.sum() == 0.0
            assert np.all(low >= 0) and np.all(high <= 1)
            assert np.all(low <= shares + 1e-12) and np.all(shares <= high + 1e-12)


def test_no_posts_give_zero_shares(fits: dict[str, Counting]) -> None:
    q = quantify(np.zeros((0, K)), fits["emq"], rest=3)
    assert q.shares.tolist() == [0.0] * K and q.among is not None and q.among.tolist() == [0.0] * (K - 1)


def test_intervals_cover_the_truth_at_shifted_mixes(fits: dict[str, Counting]) -> None:
    """Fresh samples of 250 posts at uniformly random mixes: the adjusted methods' intervals
    (posts and fits resampled) hold the true share about 95 % of the time; cc's do not."""
    rng = np.random.default_rng(10)
    hits = {m: 0 for m in ("cc", "pacc", "emq")}
    pairs = 0
    for s in range(40):
        probs, y = _texts(250, rng.dirichlet(np.ones(K)), seed=100 + s)
        true = label_shares(y, K)
        pairs += K
        for m in hits:
            q = quantify(probs, fits[m])
            hits[m] += int(((true >= q.low - 1e-9) & (true <= q.high + 1e-9)).sum())
    coverage = {m: h / pairs for m, h in hits.items()}
    assert coverage["cc"] < 0.6, coverage
    assert coverage["pacc"] >= 0.9 and coverage["emq"] >= 0.9, coverage


def test_the_protocol_ranks_adjusted_counting_above_plain_counting() -> None:
    probs, y = _texts(6000, TRAIN_MIX, seed=6)
    res = shift_protocol(probs, y, ["cc", "pacc"], n=250, draws=30, seed=0, resamples=10)
    for proto in ("uniform", "natural"):
        cc, pacc = res[proto]["cc"], res[proto]["pacc"]
        assert pacc.mean_tvd < cc.mean_tvd and pacc.draws == 30
        assert pacc.coverage_by_margin[0.02] >= pacc.coverage_by_margin[0.0]
    assert res["uniform"]["pacc"].mean_tvd < res["uniform"]["cc"].mean_tvd / 2


def test_resampled_fits_widen_the_interval(fits: dict[str, Counting]) -> None:
    probs, _ = _texts(250, np.array([0.3, 0.3, 0.2, 0.2]), seed=7)
    fit = fits["pacc"]
    alone = quantify(probs, replace(fit, resampled=()))
    both = quantify(probs, fit)
    assert (both.high - both.low).sum() > (alone.high - alone.low).sum()
    margin = quantify(probs, replace(fit, interval_margin=0.01))
    assert np.all(margin.high >= np.minimum(both.high + 0.01, 1.0) - 1e-12)


def test_em_draws_match_em_run_on_each_resample_alone() -> None:
    probs, _ = _texts(120, np.array([0.05, 0.15, 0.3, 0.5]), seed=8)
    prior = TRAIN_MIX[None, :]
    weights = bootstrap_weights(120, 40, seed=1)
    draws = em_draws(probs[None], weights[None], prior)[0]
    for b in (0, 7, 39):
        texts = np.repeat(probs, weights[b].astype(int), axis=0)
        exact = em_point(texts[None], prior)[0]
        assert np.abs(draws[b] - exact).max() < 2e-3


def test_a_fit_survives_the_artifact_round_trip(fits: dict[str, Counting]) -> None:
    for m in METHODS:
        fit = replace(fits[m], interval_margin=0.005)
        back = counting_from_spec(dict(counting_spec(fit)))  # type: ignore[arg-type]
        assert back.method == m and back.interval_margin == pytest.approx(0.005 if m else 0)
        probs, _ = _texts(50, TRAIN_MIX, seed=9)
        assert estimate(probs, back) == pytest.approx(estimate(probs, fit))
    # an artifact written before resampled fits: pacc with its matrix alone still serves
    old = counting_from_spec({"method": "pacc", "adjustment": np.eye(K).tolist()})
    assert old.resamples == 0 and quantify(np.full((10, K), 0.25), old).shares.sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="unknown counting method"):
        counting_from_spec({"method": "vote"})


def test_net_sentiment_is_positive_minus_negative_over_both_with_an_interval() -> None:
    labels = ("negative", "neutral", "positive")
    shares = np.array([0.2, 0.5, 0.3])
    draws = np.array([[0.2, 0.5, 0.3], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]] * 10)
    value, low, high = net_sentiment(shares, draws, labels)
    assert value == pytest.approx(0.2)
    assert -1 <= low <= value <= high <= 1
    assert net_sentiment(np.array([0.0, 1.0, 0.0]), np.array([[0.0, 1.0, 0.0]]), labels) == (0.0, 0.0, 0.0)
