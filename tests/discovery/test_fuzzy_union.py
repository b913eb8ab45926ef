"""raregal's fuzzy union is umap-learn's fuzzy simplicial set, bit for bit, in less memory."""

import numpy as np
import pytest

from raregal.discovery.fuzzy_union import fuzzy_union
from raregal.discovery.knn import knn_graph


@pytest.mark.parametrize("n, dim, k, duplicates", [(3000, 8, 15, 50), (9000, 16, 30, 0)])
def test_the_same_matrix_as_umap_learn(n, dim, k, duplicates):
    from umap.umap_ import fuzzy_simplicial_set

    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    X[:duplicates] = X[0]  # ties and zero distances
    knn = knn_graph(X, k, deterministic=True)
    ref = fuzzy_simplicial_set(X, k, np.random.RandomState(0), "precomputed", knn_indices=knn[0],
                               knn_dists=knn[1])[0].tocsr()
    ref.sort_indices()
    mine = fuzzy_union(knn[0], knn[1], k)
    assert mine.has_sorted_indices and mine.dtype == np.float32
    assert np.array_equal(ref.indptr, mine.indptr) and np.array_equal(ref.indices, mine.indices)
    assert np.array_equal(ref.data, mine.data)
    assert (mine != mine.T).nnz == 0  # symmetric


def test_epochs_per_sample_is_umap_learns():
    from umap.umap_ import make_epochs_per_sample

    from raregal.discovery.deterministic_umap import _epochs_per_sample

    rng = np.random.default_rng(0)
    w = rng.random(50_000).astype(np.float32)
    w[::7], w[5] = 0, 1e-30
    for n_epochs in (10, 200, 500):
        expected = make_epochs_per_sample(w, n_epochs)
        assert np.array_equal(expected, _epochs_per_sample(w, w.max(), n_epochs, np.empty(len(w), np.float64)))
        # the layout's float32 schedule: umap-learn's values, each rounded once
        assert np.array_equal(expected.astype(np.float32), _epochs_per_sample(w, w.max(), n_epochs, np.empty(len(w), np.float32)))


def test_a_loaded_knn_graph_gives_the_same_union():
    from raregal.discovery.fuzzy_union import fuzzy_union, fuzzy_union_loaded

    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, 8)).astype(np.float32)
    from raregal.discovery.knn import exact_knn

    knn = exact_knn(X, 15, "euclidean")
    a, b = fuzzy_union(*knn, 15), fuzzy_union_loaded(lambda: knn, 15)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)
