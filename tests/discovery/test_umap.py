"""reduce: the k-NN graph, the PCA init and the UMAP embedding, tested directly on small arrays."""

import numpy as np
import pytest

from raregal.discovery import umap as reduce
from raregal.discovery import knn


def _two_blobs(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 0.1, (n, d)), rng.normal(5, 0.1, (n, d))]).astype(np.float32)
    return X, np.repeat([0, 1], n)


def test_knn_graph_lists_self_first_and_honours_metric():
    X = np.array([[1, 0], [0, 1], [10, 0.1]], dtype=np.float32)
    idx, dist = knn.knn_graph(X, 2)
    assert idx.shape == dist.shape == (3, 2) and idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])
    assert idx[0, 1] == 1  # by length, (1,0) is nearest (0,1)
    idx_cos, _ = knn.knn_graph(X, 2, metric="cosine")
    assert idx_cos[0, 1] == 2  # by angle, (1,0) is nearest (10,0.1)


def test_pca_init_gives_main_axes():
    X, y = _two_blobs()
    init = reduce.pca_init(X, 2)
    assert init.shape == (len(X), 2) and init.dtype == np.float32
    # the first axis separates the blobs
    assert (np.sign(init[y == 0, 0]) != np.sign(init[y == 1, 0].mean())).all()


def test_umap_embed_separates_blobs_and_is_reproducible():
    X, y = _two_blobs()
    graph = knn.knn_graph(X, 10)
    a = reduce.umap_embed(X, 2, 10, knn=graph, n_epochs=50, random_state=1)
    b = reduce.umap_embed(X, 2, 10, knn=graph, n_epochs=50, random_state=1)
    assert a.shape == (len(X), 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    gap = np.linalg.norm(a[y == 0].mean(0) - a[y == 1].mean(0))
    spread = max(a[y == 0].std(0).max(), a[y == 1].std(0).max())
    assert gap > 3 * spread


def test_umap_embed_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown UMAP backend"):
        reduce.umap_embed(np.zeros((5, 2), np.float32), 2, 2, backend="tpu")


def _true_neighbours(X, k, metric):
    """Brute force in float64: each row's k nearest rows (itself first) and their distances."""
    X = X.astype(np.float64)
    if metric == "cosine":
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        D = 1 - U @ U.T
    else:
        D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, -1)  # self first, whatever rounding says
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(D, idx, axis=1)
    dist[:, 0] = 0
    return idx, dist


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_graph_below_its_threshold_gives_the_true_nearest_neighbours(metric):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    assert len(X) < knn.EXACT_KNN_BELOW  # the exact path
    idx, dist = knn.knn_graph(X, 12, metric=metric, random_state=0)
    assert idx.shape == dist.shape == (300, 12) and idx.dtype == np.int32 and dist.dtype == np.float32
    true_idx, true_dist = _true_neighbours(X, 12, metric)
    np.testing.assert_array_equal(idx, true_idx)
    np.testing.assert_allclose(dist, true_dist, atol=1e-5)
    # the same graph for any seed, and the thread-independent exact k-NN agrees with it
    np.testing.assert_array_equal(knn.knn_graph(X, 12, metric=metric, random_state=9)[0], idx)
    ex_idx, ex_dist = knn.knn_graph(X, 12, metric=metric, deterministic=True)
    np.testing.assert_array_equal(ex_idx, idx)
    np.testing.assert_allclose(ex_dist, dist, atol=1e-5)


def test_umap_embed_differs_with_the_seed_and_its_metric_reaches_umap(monkeypatch):
    X, _ = _two_blobs()
    graph = knn.knn_graph(X, 10)
    a = reduce.umap_embed(X, 3, 10, knn=graph, n_epochs=30, random_state=1)
    b = reduce.umap_embed(X, 3, 10, knn=graph, n_epochs=30, random_state=2, init="random")
    assert a.shape == b.shape == (len(X), 3) and np.isfinite(a).all() and not np.allclose(a, b)
    import umap

    seen = {}

    class Spy(umap.UMAP):
        def __init__(self, **kw):
            seen.update(kw)
            super().__init__(**kw)

    monkeypatch.setattr(umap, "UMAP", Spy)
    reduce.umap_embed(X, 2, 10, knn=knn.knn_graph(X, 10, "cosine"), metric="cosine", n_epochs=10,
                      init="random", random_state=0)
    assert seen["metric"] == "cosine" and seen["n_components"] == 2 and seen["random_state"] == 0
    assert seen["precomputed_knn"][0].shape == (len(X), 10)
