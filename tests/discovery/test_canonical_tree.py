"""raregal.discovery.canonical_tree: every tied minimum spanning tree of a graph becomes the same tree, with the same hierarchy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from raregal.discovery.canonical_tree import canonical_spanning_tree


def components_at(tree: np.ndarray, n: int, w: float) -> np.ndarray:
    """Component label of each point, canonically numbered, using the edges of weight <= w."""
    keep = tree[:, 2] <= w
    graph = coo_matrix((np.ones(keep.sum()), (tree[keep, 0].astype(int), tree[keep, 1].astype(int))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    rename = np.empty(labels.max() + 1, dtype=int)
    rename[labels[np.sort(first)]] = np.arange(len(first))
    return rename[labels]


def test_two_tied_trees_of_one_graph_become_the_same_tree():
    # points 0..5: {0,1} joined at 1, {2,3} at 1, {4} and {5} alone; then 0-2, 1-3, 2-4, 3-5 and 0-4 all weigh 2
    tree_a = np.array([[0, 1, 1.0], [2, 3, 1.0], [0, 2, 2.0], [2, 4, 2.0], [3, 5, 2.0]])
    tree_b = np.array([[1, 0, 1.0], [3, 2, 1.0], [1, 3, 2.0], [0, 4, 2.0], [5, 3, 2.0]])
    a, b = canonical_spanning_tree(tree_a), canonical_spanning_tree(tree_b[::-1])
    np.testing.assert_array_equal(a, b)
    # weight 2 joins the components named 0 ({0,1}), 2 ({2,3}), 4 and 5, chained from 0
    np.testing.assert_array_equal(a, [[0, 1, 1.0], [2, 3, 1.0], [0, 2, 2.0], [0, 4, 2.0], [0, 5, 2.0]])


def test_the_hierarchy_is_kept_at_every_weight():
    rng = np.random.default_rng(3)
    n = 400
    # a random tree with heavily tied weights (0.1 steps): the partition at every weight must stay
    src = np.array([rng.integers(0, i) for i in range(1, n)])
    tree = np.column_stack([src, np.arange(1, n), rng.integers(1, 8, n - 1) / 10])
    out = canonical_spanning_tree(tree[rng.permutation(n - 1)])
    assert out.shape == (n - 1, 3)
    np.testing.assert_array_equal(np.sort(out[:, 2]), np.sort(tree[:, 2]))
    for w in np.unique(tree[:, 2]):
        np.testing.assert_array_equal(components_at(out, n, w), components_at(tree, n, w))
    assert np.all(out[:, 0] < out[:, 1])
    np.testing.assert_array_equal(np.lexsort((out[:, 1], out[:, 0], out[:, 2])), np.arange(n - 1))  # sorted


def test_not_a_tree_is_refused():
    with pytest.raises(ValueError, match="spanning tree"):
        canonical_spanning_tree(np.array([[0, 1, 1.0], [1, 0, 2.0]]))  # the second edge closes a cycle
    with pytest.raises(ValueError, match="outside"):
        canonical_spanning_tree(np.array([[0, 5, 1.0]]))
    with pytest.raises(ValueError, match="outside"):
        canonical_spanning_tree(np.array([[0, -1, 1.0], [0, 1, 2.0]]))
    with pytest.raises(ValueError, match="whole point indices"):
        canonical_spanning_tree(np.array([[0, 1.5, 1.0], [1, 2, 2.0]]))
    with pytest.raises(ValueError, match=r"\(n - 1, 3\)"):
        canonical_spanning_tree(np.zeros((3, 2)))
    assert canonical_spanning_tree(np.zeros((0, 3))).shape == (0, 3)


FIT = """
import sys, numba, numpy as np
from raregal.discovery.hdbscan_leaves import leaf_clusters
numba.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
Y = np.concatenate([rng.normal(0, 1, (2000, 5)), rng.normal(3, 0.3, (1000, 5)), rng.normal(-3, 0.2, (60, 5))])
Y = (np.round(Y * 4) / 4).astype(np.float32)  # on a grid: mutual-reachability distances tie everywhere
fits = [leaf_clusters(Y, 10, 10) for _ in range(4)]
assert all(np.array_equal(f.labels, fits[0].labels) for f in fits), "labels changed between identical fits"
sys.stdout.write(",".join(map(str, fits[0].labels)) + "|" + ",".join(f"{p:.9g}" for p in fits[0].probabilities))
"""


@pytest.mark.slow
def test_fast_hdbscan_labels_are_the_same_at_one_and_two_threads():
    """On 2 threads the Boruvka tree of this table changes between runs (its tied edges); the labels must not."""
    runs = [subprocess.run([sys.executable, "-c", FIT, str(t)], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "NUMBA_NUM_THREADS": "2"}).stdout for t in (1, 2)]
    assert runs[0] == runs[1]
    labels = np.array(runs[0].split("|")[0].split(","), dtype=int)
    assert labels.max() >= 1  # more than one cluster: the hierarchy was not trivial


def test_leaf_clusters_checks_its_parameters_and_keeps_fast_hdbscans_edge_cases():
    from raregal.discovery.hdbscan_leaves import leaf_clusters

    rng = np.random.default_rng(1)
    Y = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(6, 0.2, (40, 3))]).astype(np.float32)
    with pytest.raises(ValueError, match="min_samples=0: must be a positive integer"):
        leaf_clusters(Y, 0, 10)
    with pytest.raises(ValueError, match="min_cluster_size=2.5: must be a positive integer"):
        leaf_clusters(Y, 5, 2.5)
    clean = leaf_clusters(Y, 5, 10)
    Y_nan = np.concatenate([Y, np.full((2, 3), np.nan, np.float32)])
    with_nan = leaf_clusters(Y_nan, 5, 10)  # non-finite rows: fast_hdbscan's own path, they become noise
    assert with_nan.labels.shape == (342,) and (with_nan.labels[-2:] == -1).all()
    assert with_nan.n_clusters == clean.n_clusters >= 1
    assert set(with_nan.labels[300:340]) == {with_nan.labels[300]} != {-1}  # the tight group is one cluster
    one = leaf_clusters(Y[:1], 1, 1)
    assert one.labels.tolist() == [-1] and one.n_clusters == 0
