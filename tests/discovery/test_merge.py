"""Merge suggestions from the condensed tree and from representation centroids."""

import numpy as np
import pandas as pd
import pytest

from raregal.discovery.checks.merge import COLUMNS, centroid_evidence, merge_suggestions, tree_relations
from raregal.evaluation.planted import make_planted
from raregal.discovery.estimator import RareClassSearch


def _tree(rows):
    return pd.DataFrame(rows, columns=["parent", "child", "lambda_val", "child_size"])


def test_tree_relations_by_hand():
    # 10 points; root 10 splits at λ=1 into 11 and 12; 12 splits at λ=3 into 13 and 14
    tree = _tree([(10, 11, 1.0, 4), (10, 12, 1.0, 6), (12, 13, 3.0, 3), (12, 14, 3.0, 3)]
                 + [(11, p, 2.0, 1) for p in range(4)] + [(13, p, 4.0, 1) for p in range(4, 7)]
                 + [(14, p, 5.0, 1) for p in range(7, 10)])
    distance, join = tree_relations(tree, np.array([11, 13, 14]))
    np.testing.assert_array_equal(distance, [[0, 3, 3], [3, 0, 2], [3, 2, 0]])
    assert join[1, 2] == 3.0 and join[0, 1] == join[0, 2] == 1.0 and np.isnan(join[0, 0])
    labels = np.array([0] * 4 + [1] * 3 + [2] * 3)
    X = np.zeros((10, 2))
    X[:4] = [10.0, 0.0]  # cluster 0 far away; 1 and 2 touch
    X[7:] = [0.1, 0.0]
    out = merge_suggestions(X, labels, tree, np.array([11, 13, 14]), max_centroid_ratio=0.1)
    assert list(out.columns) == COLUMNS
    assert out[["cluster_a", "cluster_b"]].values.tolist() == [[1, 2]]
    row = out.iloc[0]
    assert row["reason"] == "tree+centroids" and row["tree_distance"] == 2
    assert row["join_density_ratio"] == pytest.approx(3.0 / 4.5)  # median member λ of 13 and 14: 4 and 5
    # nothing close enough: an empty table with the columns
    assert merge_suggestions(X, labels, tree, np.array([11, 13, 14]), max_tree_distance=1,
                             max_centroid_ratio=0.0).empty


def test_centroid_evidence():
    X = np.array([[0.0, 0], [0, 2], [10, 0], [10, 2], [0, 40], [0, 42]])
    dist, ratio, sep = centroid_evidence(X, np.array([0, 0, 1, 1, 2, 2]))
    assert dist[0, 1] == pytest.approx(10.0)
    assert ratio[0, 1] == pytest.approx(10.0 / np.median([dist[0, 1], dist[0, 2], dist[1, 2]]))
    assert sep[0, 1] == pytest.approx(10.0 / 2.0)  # rms radius 1 each


@pytest.fixture(scope="module")
def split_group():
    """A planted group moved apart in two halves, so that leaf clustering finds two siblings."""
    frame = make_planted(n=3000, dim=16, group_fractions=(0.01, 0.015, 0.03), seed=3)
    X = frame.filter(like="feat_").to_numpy().copy()
    truth = frame["true_class"].to_numpy().astype(object)
    rows = np.flatnonzero(truth == "planted_2")
    half = rows[: len(rows) // 2]
    direction = np.random.default_rng(0).standard_normal(X.shape[1])
    X[half] += 0.4 * direction / np.linalg.norm(direction)  # ~3 group sigmas: two lumps that touch
    truth[half] = "planted_2_half"
    est = RareClassSearch(n_neighbors=15, min_samples=10, min_cluster_size=15, umap_n_epochs=100, map_2d=False,
                          random_state=0).fit(X)
    return X, truth, est


def test_split_group_is_proposed_for_merging(split_group):
    X, truth, est = split_group
    names = {}
    for k in range(est.n_clusters_):
        values, counts = np.unique(truth[est.labels_ == k], return_counts=True)
        names[k] = values[counts.argmax()]
    halves = sorted(k for k, n in names.items() if n.startswith("planted_2"))
    assert len(halves) == 2, names
    out = merge_suggestions(X, est.labels_, est.condensed_tree_, est.cluster_tree_nodes_)
    pairs = [tuple(p) for p in out[["cluster_a", "cluster_b"]].values.tolist()]
    assert pairs[0] == tuple(halves)  # the strongest suggestion comes first
    first = out.iloc[0]
    assert first["reason"] == "tree+centroids" and first["tree_distance"] == 2
    # distinct planted groups are never proposed together
    distinct = [k for k, n in names.items() if n in ("planted_0", "planted_1")] + halves[:1]
    assert not any(a in distinct and b in distinct for a, b in pairs)
