"""Placing galaxies the layout was not fitted on."""

import numpy as np

from raregal.discovery.knn import InvertedFile, exact_knn
from raregal.discovery.on_dask import placement


def test_placed_rows_join_the_cluster_they_sit_in_and_nothing_else():
    rng = np.random.default_rng(0)
    bulk = 2.0 * rng.standard_normal((3000, 6))
    group = 4.0 + 0.05 * rng.standard_normal((400, 6))
    X = np.concatenate([bulk, group]).astype(np.float32)
    truth = np.r_[np.full(3000, -1), np.zeros(400, int)]
    fit = np.r_[rng.random(3000) < 0.3, rng.random(400) < 0.5]  # the fitted sample
    idx, d = exact_knn(X[fit], 15)
    _, d_all = exact_knn(X, 15)
    log_dk = np.log(d_all[:, -1].astype(float))
    labels = truth[fit]
    emb = np.where(labels[:, None] >= 0, 10.0, 0.0) + rng.standard_normal((fit.sum(), 5))
    fitted = {"labels": labels, "probabilities": np.where(labels >= 0, 0.9, 0.0), "embedding": emb.astype(np.float32),
              "embedding_2d": None, "reach": placement.cluster_reach(labels, idx, d, 1),
              "core_log_dk": placement.core_density(labels, log_dk[fit], 1)}
    index = InvertedFile(X[fit], n_lists=8, n_probe=8)
    out = placement.place(X[~fit], log_dk[~fit], index, fitted, n_neighbors=15)
    rest = truth[~fit]
    assert (out["labels"][rest == 0] == 0).mean() > 0.95  # the group's unfitted members join it
    assert (out["labels"][rest == -1] == 0).mean() < 0.01  # the bulk does not
    assert (out["embedding"][rest == 0, 0] > 5).all()  # placed beside the group in the map
    assert out["embedding_2d"] is None
    assert ((out["probabilities"] > 0) == (out["labels"] >= 0)).all()


def test_cluster_reach_is_the_largest_nearest_member_distance():
    X = np.array([[0.0], [1.0], [3.0], [10.0], [10.5]], np.float32)
    idx, d = exact_knn(X, 5)
    reach = placement.cluster_reach(np.array([0, 0, 0, 1, 1]), idx, d, 2)
    np.testing.assert_allclose(reach, [2.0, 0.5])
