"""HDBSCAN's spanning tree started in blocks is fast_hdbscan's tree, bit for bit."""

import re

import numpy as np
import pytest
from fast_hdbscan.hdbscan import compute_minimum_spanning_tree

from raregal.discovery.blocked_boruvka import _core_and_first, spanning_tree


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


def test_points_whose_first_edge_lies_beyond_the_kept_neighbours_are_queried_again():
    from fast_hdbscan.hdbscan import build_kdtree

    Y = table(12000, seed=60)
    tree = build_kdtree(Y)
    _, edges_4, again = _core_and_first(tree, 60, 5000, 4)
    _, edges_all, none_again = _core_and_first(tree, 60, 5000, 61)  # every neighbour kept: no second pass
    assert again > 100 and none_again == 0
    np.testing.assert_array_equal(edges_4, edges_all)
    Y2 = table(12000, seed=60)
    np.testing.assert_array_equal(spanning_tree(Y2, 60, block=5000, first=4),
                                  compute_minimum_spanning_tree(Y2, min_samples=60, reproducible=True)[0])


def test_duplicate_points_give_the_same_tree():
    Y = np.repeat(table(500, 1), 3, axis=0)  # every point three times: self is not always column 0
    ref = compute_minimum_spanning_tree(Y, min_samples=20, reproducible=True)[0]
    np.testing.assert_array_equal(spanning_tree(Y, 20, block=256, first=2), ref)


def test_min_samples_one_is_refused():
    with pytest.raises(ValueError, match="min_samples=1"):
        spanning_tree(table(100, 0), 1)


def test_a_long_tree_says_how_far_its_core_distances_are_and_the_components_left(monkeypatch):
    import raregal.timing

    lines = []
    monkeypatch.setattr(raregal.timing, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(raregal.timing.log, "info", lines.append)
    spanning_tree(table(3000, seed=10), 10, block=700)
    core = [line for line in lines if "core distances (10 neighbours a point)" in line]
    assert [line.split("%")[0].strip() for line in core] == ["22.2", "44.4", "66.7", "88.9", "100.0"]  # 3150 rows
    left = [int(re.search(r"components left: ([\d,]+), ", line).group(1).replace(",", ""))
            for line in lines if "components left" in line]
    assert left and left == sorted(left, reverse=True) and left[-1] == 1
