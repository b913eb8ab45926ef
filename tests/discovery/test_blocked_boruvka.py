"""HDBSCAN's spanning tree started in blocks is fast_hdbscan's tree, bit for bit."""

import numpy as np
import pytest
from fast_hdbscan.hdbscan import compute_minimum_spanning_tree

from raregal.discovery.blocked_boruvka import spanning_tree


def table(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Y = np.concatenate([rng.standard_normal((n, 5)), 0.1 * rng.standard_normal((n // 20, 5)) + 3])
    return np.round(Y, 2).astype(np.float32)  # many tied distances


@pytest.mark.parametrize("n, min_samples, block, first", [(3000, 10, 700, 16), (12000, 60, 5000, 4),
                                                          (2000, 40, 100_000, 41)])
def test_the_same_tree_as_fast_hdbscan(n, min_samples, block, first):
    Y = table(n, seed=min_samples)
    ref = compute_minimum_spanning_tree(Y, min_samples=min_samples, reproducible=True)[0]
    got = spanning_tree(Y, min_samples, block=block, first=first)
    assert got.shape == (len(Y) - 1, 3)
    np.testing.assert_array_equal(got, ref)


def test_duplicate_points_and_a_small_first_need_the_second_pass():
    Y = np.repeat(table(500, 1), 3, axis=0)  # every point three times: self is not always column 0
    ref = compute_minimum_spanning_tree(Y, min_samples=20, reproducible=True)[0]
    np.testing.assert_array_equal(spanning_tree(Y, 20, block=256, first=2), ref)


def test_min_samples_one_is_refused():
    with pytest.raises(ValueError, match="min_samples=1"):
        spanning_tree(table(100, 0), 1)
