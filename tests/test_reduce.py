"""reduce: the k-NN graph, the PCA init and the UMAP embedding, tested directly on small arrays."""

import numpy as np
import pytest

from raregal import reduce


def _two_blobs(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 0.1, (n, d)), rng.normal(5, 0.1, (n, d))]).astype(np.float32)
    return X, np.repeat([0, 1], n)


def test_knn_graph_lists_self_first_and_honours_metric():
    X = np.array([[1, 0], [0, 1], [10, 0.1]], dtype=np.float32)
    idx, dist = reduce.knn_graph(X, 2)
    assert idx.shape == dist.shape == (3, 2) and idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])
    assert idx[0, 1] == 1  # by length, (1,0) is nearest (0,1)
    idx_cos, _ = reduce.knn_graph(X, 2, metric="cosine")
    assert idx_cos[0, 1] == 2  # by angle, (1,0) is nearest (10,0.1)


def test_pca_init_gives_main_axes():
    X, y = _two_blobs()
    init = reduce.pca_init(X, 2)
    assert init.shape == (len(X), 2) and init.dtype == np.float32
    # the first axis separates the blobs
    assert (np.sign(init[y == 0, 0]) != np.sign(init[y == 1, 0].mean())).all()


def test_umap_embed_separates_blobs_and_is_reproducible():
    X, y = _two_blobs()
    knn = reduce.knn_graph(X, 10)
    a = reduce.umap_embed(X, 2, 10, knn=knn, n_epochs=50, random_state=1)
    b = reduce.umap_embed(X, 2, 10, knn=knn, n_epochs=50, random_state=1)
    assert a.shape == (len(X), 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    gap = np.linalg.norm(a[y == 0].mean(0) - a[y == 1].mean(0))
    spread = max(a[y == 0].std(0).max(), a[y == 1].std(0).max())
    assert gap > 3 * spread


def test_umap_embed_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown UMAP backend"):
        reduce.umap_embed(np.zeros((5, 2), np.float32), 2, 2, backend="tpu")
