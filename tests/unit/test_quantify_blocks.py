"""The bootstrap's resamples drawn a block at a time for big analyses (a 100,000-text file):
the same draws as in one piece (cc exactly; pcc to the last bit of a float), in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.counting.quantify import Counting, _draws, _shares, bootstrap_weights, quantify

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("method", ["cc", "pcc"])
@pytest.mark.parametrize("n", [7, 2_000, 4_321])
def test_draws_in_blocks_equal_the_draws_in_one_piece(method: str, n: int) -> None:
    probs = np.random.default_rng(n).dirichlet(np.ones(4), size=n)
    counting = Counting(method)
    one_piece = _shares(probs, bootstrap_weights(n, 1000, 0), counting, resampled=True)
    blocks = _draws(probs, 1000, 0, counting)
    if method == "cc":  # sums of whole posts: exact
        np.testing.assert_array_equal(blocks, one_piece)
    else:  # the matrix product's summation may differ in the last bit at a block's edge
        np.testing.assert_allclose(blocks, one_piece, rtol=1e-12, atol=0)


def test_a_big_analysis_is_quantified_in_bounded_memory() -> None:
    """60,000 posts: in one piece the weights alone would be 480 MB (and the draws twice that)."""
    import resource

    probs = np.random.default_rng(1).dirichlet(np.ones(7), size=60_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q = quantify(probs, Counting("cc"), rest=6)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 150, grown_mib
    assert (q.low <= q.shares).all() and (q.shares <= q.high).all()


def test_emq_bootstrap_memory_does_not_grow_with_a_files_length() -> None:
    """The served emotion head's EMQ (with its resampled fits) on 20,000 and on 100,000
    posts: the bootstrap's peak allocation is bounded by the block size, not the file."""
    import json
    import tracemalloc
    from pathlib import Path

    from serve_app.counting.quantify import counting_from_spec

    spec = json.loads(Path("models/multitask/labels.json").read_text())["heads"]["emotion"]["breakdown"]
    counting = counting_from_spec(spec)
    assert counting.method == "emq" and counting.resamples > 0
    peaks = {}
    for n in (20_000, 100_000):
        probs = np.random.default_rng(n).dirichlet(np.ones(7) * 0.3, size=n)
        tracemalloc.start()
        q = quantify(probs, counting, rest=6)
        peaks[n] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert (q.low <= q.shares + 1e-12).all() and (q.shares <= q.high + 1e-12).all()
    # Inputs alone grow 4.5 MiB (100,000 x 7 x 8 bytes, less 20,000's); the rest is blocks.
    assert peaks[100_000] < peaks[20_000] + 25, peaks
