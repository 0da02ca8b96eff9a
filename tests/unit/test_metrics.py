from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    _figures_from_confusions,
    agreement,
    bootstrap_intervals,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
)

pytestmark = pytest.mark.unit
LABELS = ["a", "b", "c"]


def test_report_matches_hand_computed_values() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    r = classification_report(y_true, y_pred, LABELS)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    # a: P=1 R=2/3 F1=.8 ; b: P=1/2 R=1/2 F1=.5 ; c: P=1/2 R=1 F1=2/3
    assert r["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert r["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert r["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["weighted_f1"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3) / 6)
    assert r["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_absent_classes_do_not_drag_macro_f1_down() -> None:
    r = classification_report([0, 0], [0, 0], LABELS)
    assert r["macro_f1"] == 1.0
    assert r["per_class"]["b"]["support"] == 0


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix([0, 1, 1, 2], [0, 1, 0, 2], 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_agreement() -> None:
    assert agreement([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 6)) * 2.0
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(6, p=p) for p in probs])
    # The model is 3x over-confident: its logits are the true ones times 3.
    t = fit_temperature(true_logits * 3.0, y)
    assert t == pytest.approx(3.0, rel=0.1)


def test_ece_is_zero_for_perfectly_calibrated_one_hot_and_positive_otherwise() -> None:
    y = [0, 1, 2]
    assert expected_calibration_error(np.eye(3), y) == pytest.approx(0.0)
    overconfident = np.array([[0.99, 0.005, 0.005]] * 3)
    assert expected_calibration_error(overconfident, y) > 0.5


def test_bootstrap_intervals_hold_the_figure_and_shrink_with_the_sample() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 4000)
    pred = np.where(rng.random(4000) < 0.7, y, rng.integers(0, 3, 4000))
    report = classification_report(y.tolist(), pred.tolist(), LABELS)
    ci = bootstrap_intervals(y.tolist(), pred.tolist(), 3)
    # The figures read off a confusion matrix are the report's own.
    observed = _figures_from_confusions(np.asarray(report["confusion_matrix"])[None])
    for key in ("accuracy", "macro_f1", "macro_recall"):
        assert observed[key][0] == pytest.approx(report[key]), key
        low, high = ci[key]
        assert low < report[key] < high, key
    # Accuracy is a proportion: its bootstrap spread is the binomial one, 1.96 sd each side.
    acc = report["accuracy"]
    half = 1.96 * np.sqrt(acc * (1 - acc) / len(y))
    assert ci["accuracy"][1] - ci["accuracy"][0] == pytest.approx(2 * half, rel=0.1)
    # A sample a quarter the size: intervals about twice as wide.
    small = bootstrap_intervals(y[:1000].tolist(), pred[:1000].tolist(), 3)
    ratio = (small["macro_recall"][1] - small["macro_recall"][0]) / (
        ci["macro_recall"][1] - ci["macro_recall"][0]
    )
    assert 1.6 < ratio < 2.4
    # A perfect classifier cannot be anything else on a resample; nothing to resample, no interval.
    assert bootstrap_intervals([0, 1, 2, 1], [0, 1, 2, 1], 3)["macro_f1"] == [1.0, 1.0]
    assert bootstrap_intervals([], [], 3) == {}
