"""The drift statistics (numpy only, serve_app/monitoring/drift.py) against scipy's, and the float16 rows
the Classifier's tap writes."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.model.drift_profile import HeadReference, ReferenceProfile
from serve_app.monitoring.drift import (
    DriftThresholds,
    check_window,
    chi2_homogeneity,
    chi2_sf,
    ks_2samp,
    mmd_permutation,
    total_variation,
)
from serve_app.stores.drift_store import decode_rows, encode_rows

pytestmark = pytest.mark.unit

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(("x", "df"), [(0.5, 1), (3.0, 2), (12.6, 6), (40.0, 6), (90.0, 3)])
def test_chi_square_tail_matches_scipy(x: float, df: int) -> None:
    assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-6, abs=1e-300)


def test_homogeneity_test_matches_scipy() -> None:
    a, b = np.array([30, 50, 20, 0]), np.array([60, 70, 80, 0])
    stat, p = chi2_homogeneity(a, b)
    ref = stats.chi2_contingency(np.vstack([a, b])[:, :3], correction=False)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-6)
    assert total_variation(a / a.sum(), b / b.sum()) == pytest.approx(0.380 / 2.1, abs=1e-4)


def test_ks_matches_scipy_asymptotic() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.beta(5, 2, 300), rng.beta(4, 2, 1000)
    d, p = ks_2samp(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=0.1)  # Numerical Recipes' small-sample correction


def test_mmd_separates_shifted_embeddings_and_not_same_ones() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 32))
    _, p_same = mmd_permutation(rng.normal(size=(300, 32)), ref)
    mmd, p_shift = mmd_permutation(rng.normal(size=(300, 32)) + 0.3, ref)
    assert p_same > 0.01 and p_shift < 1e-6 and mmd > 0


def test_float16_rows_round_trip_with_and_without_embeddings() -> None:
    probs = np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)
    emb = np.arange(8, dtype=np.float32).reshape(2, 4)
    p, e = decode_rows(encode_rows(probs, emb), 2)
    np.testing.assert_allclose(p, probs, atol=1e-3)
    assert e is not None and np.array_equal(e, emb)
    p, e = decode_rows(encode_rows(probs, None), 2)
    assert e is None and p.shape == (2, 2)


def test_a_window_too_small_or_without_reference_gives_no_verdict() -> None:
    head = HeadReference(("a", "b"), (50, 50), tuple(np.linspace(0.5, 1, 100)))
    profile = ReferenceProfile({"t": head}, None, "ref")
    probs = np.tile([[0.9, 0.1]], (50, 1))  # all "a": a huge shift, but 50 posts < min_posts
    small = check_window("s", "t", "v", probs, None, profile, DriftThresholds())
    assert not small.drifted and small.tests == ()
    big = check_window("s", "t", "v", np.tile([[0.9, 0.1]], (300, 1)), None, profile, DriftThresholds())
    assert big.drifted and big.reasons == ["label_mix", "confidence"]
    assert check_window("s", "t", "v", probs, None, None, DriftThresholds()).reference == "no reference"
