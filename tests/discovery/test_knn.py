"""raregal.discovery.knn: the deterministic inverted-file k-NN graph of layout="deterministic" above 8,192 rows."""

import numba
import numpy as np
import pytest

from raregal.discovery import knn
from raregal.discovery.knn import default_lists, partitioned_knn


def _clumps(n=4000, d=16, seed=0):
    """Rows on a few curved, noisy clumps: local structure for cells to cut through."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 3, (8, d))[rng.integers(0, 8, n)]
    return (centre + rng.normal(0, 1, (n, d))).astype(np.float32)


def _recall(a, b):
    return np.mean([len(np.intersect1d(x, y)) / a.shape[1] for x, y in zip(a, b)])


def test_recall_against_the_exact_graph_and_its_distances_are_true_ones():
    X = _clumps()
    idx, dist = partitioned_knn(X, 15, n_lists=64, n_probe=8)
    ex_idx, ex_dist = knn.exact_knn(X, 15)
    assert idx.shape == dist.shape == (4000, 15) and idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(X)))  # self first
    assert (np.diff(dist, axis=1) >= 0).all()
    true = np.linalg.norm(X[idx] - X[:, None, :], axis=2)
    np.testing.assert_allclose(dist, true, rtol=1e-5, atol=1e-5)
    assert _recall(idx, ex_idx) > 0.97
    # fewer probed cells find fewer true neighbours: the search is approximate, not exact in disguise
    few, _ = partitioned_knn(X, 15, n_lists=64, n_probe=1)
    assert _recall(few, ex_idx) < _recall(idx, ex_idx)
    # every cell probed: exact
    all_idx, all_dist = partitioned_knn(X, 15, n_lists=16, n_probe=16)
    np.testing.assert_array_equal(all_idx, ex_idx)
    np.testing.assert_allclose(all_dist, ex_dist, atol=1e-5)


def test_same_bits_at_one_and_two_threads_and_the_seed_moves_the_cells():
    X = _clumps(3000, seed=2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = partitioned_knn(X, 10, n_lists=40, n_probe=4, random_state=3)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = partitioned_knn(X, 10, n_lists=40, n_probe=4, random_state=3)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    other = partitioned_knn(X, 10, n_lists=40, n_probe=4, random_state=4)
    assert not np.array_equal(one[0], other[0])


def test_rows_whose_cells_are_too_small_are_searched_exactly():
    X = _clumps(600, d=4, seed=1)
    X[:3] += 40  # three far-away rows make a cell of their own, far too small for 10 neighbours
    idx, dist = partitioned_knn(X, 10, n_lists=60, n_probe=1)
    ex_idx, _ = knn.exact_knn(X, 10)
    assert (idx >= 0).all()
    np.testing.assert_array_equal(idx[:3], ex_idx[:3])


def test_cosine_distances_and_the_default_cell_count():
    X = _clumps(2000, seed=3)
    idx, dist = partitioned_knn(X, 8, metric="cosine", n_lists=30, n_probe=30)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(dist, 1 - np.einsum("id,ikd->ik", U, U[idx]), atol=1e-5)
    assert default_lists(632_000) == 1590 and default_lists(100) == 20


def test_knn_graph_deterministic_switches_at_the_exact_threshold(monkeypatch):
    calls = []
    import raregal.discovery.knn as pk

    monkeypatch.setattr(pk, "partitioned_knn", lambda X, k, metric, random_state: calls.append(len(X)) or "ivf")
    X = _clumps(300)
    assert knn.knn_graph(X, 5, deterministic=True)[0].shape == (300, 5)  # exact below the threshold
    monkeypatch.setattr(knn, "EXACT_KNN_BELOW", 200)
    assert knn.knn_graph(X, 5, deterministic=True, random_state=7) == "ivf" and calls == [300]


@pytest.mark.parametrize("n_probe", [0, -1])
def test_bad_probe_counts_are_refused(n_probe):
    with pytest.raises(ValueError, match="n_probe"):
        partitioned_knn(_clumps(200), 5, n_lists=10, n_probe=n_probe)


def test_each_row_lists_itself_first_among_many_duplicates():
    X = np.repeat(np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32), 100, axis=0)
    for idx, dist in (partitioned_knn(X, 10, n_lists=60), knn.exact_knn(X, 10)):
        np.testing.assert_array_equal(idx[:, 0], np.arange(len(X)))
        assert (dist == 0).all() and (X[idx] == X[:, None, :]).all()


def test_large_cells_are_scanned_in_tiles_with_the_same_result(monkeypatch):
    import raregal.discovery.knn as pk

    X = _clumps(3000, seed=5)
    whole = partitioned_knn(X, 10, n_lists=12, n_probe=3)
    monkeypatch.setattr(pk._search_group, "__defaults__", (37,))  # cells of ~250 rows in 37-row pieces
    tiled = partitioned_knn(X, 10, n_lists=12, n_probe=3)
    np.testing.assert_array_equal(whole[0], tiled[0])
    np.testing.assert_allclose(whole[1], tiled[1], rtol=1e-6)


def test_a_long_graph_says_how_many_rows_are_searched(monkeypatch):
    import raregal.timing

    lines = []
    monkeypatch.setattr(raregal.timing, "PROGRESS_EVERY", 0.0)  # a line after every block of rows
    monkeypatch.setattr(raregal.timing.log, "info", lines.append)
    with raregal.timing.StageTimer(echo=False).stage("knn"):
        partitioned_knn(_clumps(), 15, n_lists=64, n_probe=8)
    shares = [float(line.split()[1]) for line in lines]
    assert lines and all(line.startswith("knn ") and "% of 4,000 rows searched" in line for line in lines)
    assert shares == sorted(shares) and shares[-1] == 100.0
