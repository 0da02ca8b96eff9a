"""Counting methods, breakdown error and intervals (serve_app.counting.breakdown)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.counting.breakdown import (
    BreakdownError,
    breakdown,
    breakdown_tvd,
    estimate_shares,
    fit_adjustment,
    label_shares,
    tvd,
)

pytestmark = pytest.mark.unit


def test_tvd_is_zero_for_equal_shares_and_one_for_disjoint() -> None:
    assert tvd([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert tvd([1.0, 0.0], [0.0, 1.0]) == 1.0
    # a confident wrong label on every neutral post: high accuracy elsewhere, large error
    y_true = [2] * 60 + [0] * 40
    y_pred = [0] * 60 + [0] * 40
    assert breakdown_tvd(y_true, y_pred, 3) == pytest.approx(0.6)


def test_counting_methods_differ_as_documented() -> None:
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.2, 0.8]])
    assert estimate_shares(probs, "cc").tolist() == pytest.approx([2 / 3, 1 / 3])
    assert estimate_shares(probs, "pcc").tolist() == pytest.approx([1.4 / 3, 1.6 / 3])
    with pytest.raises(BreakdownError, match="adjustment"):
        estimate_shares(probs, "pacc")
    with pytest.raises(BreakdownError, match="unknown counting method"):
        estimate_shares(probs, "vote")


def test_adjusted_counting_undoes_a_known_confusion() -> None:
    # A classifier that gives true-0 texts 0.7/0.3 and true-1 texts 0.2/0.8 on average.
    m = [[0.7, 0.3], [0.2, 0.8]]
    true = np.array([0.25, 0.75])
    observed = true @ np.array(m)
    probs = np.tile(observed, (400, 1))
    assert estimate_shares(probs, "pcc").tolist() != pytest.approx(true.tolist(), abs=0.02)
    assert estimate_shares(probs, "pacc", m).tolist() == pytest.approx(true.tolist(), abs=1e-3)


def test_fit_adjustment_rows_are_mean_probabilities_per_true_label() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0]])
    m = fit_adjustment(probs, [0, 0, 1])
    assert m[0] == pytest.approx([0.8, 0.2, 0.0])
    assert m[1] == pytest.approx([0.2, 0.8, 0.0])
    assert m[2] == [0.0, 0.0, 1.0]  # a label absent from the data is left unadjusted


def test_interval_holds_the_share_and_narrows_with_more_posts() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> float:
        labels = rng.choice(3, size=n, p=[0.2, 0.3, 0.5])
        probs = np.eye(3)[labels] * 0.8 + 0.2 / 3
        bd = breakdown(probs, "pcc")
        assert np.all(bd.low <= bd.shares + 1e-12) and np.all(bd.shares <= bd.high + 1e-12)
        return float(bd.high[2] - bd.low[2])

    small, large = width(50), width(2000)
    assert large < small / 3  # ~1/sqrt(n): 50 -> 2000 posts is ~6x narrower
    # 250 posts at 50 %: a Wilson/normal half-width is ~6 points; the bootstrap agrees
    labels = np.array([0] * 125 + [1] * 125)
    bd = breakdown(np.eye(2)[labels], "cc")
    assert 0.10 < float(bd.high[0] - bd.low[0]) < 0.14


def test_shares_among_the_other_labels_leave_the_rest_label_out() -> None:
    probs = np.array([[0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    bd = breakdown(probs, "pcc", rest=2)
    assert bd.among is not None and bd.among_low is not None and bd.among_high is not None
    assert bd.among.sum() == pytest.approx(1.0)
    assert bd.among[0] == pytest.approx(0.9 / 1.8)
    assert np.all(bd.among_low <= bd.among + 1e-12)


def test_same_posts_same_interval() -> None:
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=100)
    a, b = breakdown(probs, "pcc"), breakdown(probs, "pcc")
    assert a.low.tolist() == b.low.tolist() and a.high.tolist() == b.high.tolist()
    assert label_shares([], 3).tolist() == [0, 0, 0]
