"""The inverted-file k-NN graph split by cell is one machine's graph."""

import numpy as np

from raregal.discovery.knn import partitioned_knn
from raregal.discovery.on_dask import cell_knn


def split_graph(X, parts, n_neighbors, seed=0, n_blocks=3, n_probe=64):
    """The graph computed block by block from partitions, as the Dask tasks do, without Dask."""
    n = len(X)
    n_lists = cell_knn.n_cells(n)
    rows = cell_knn.sample_rows(n, n_lists, seed)
    centroids = cell_knn.fit_centroids(X if rows is None else X[rows], n_lists, seed)
    block_of_cell = cell_knn.cell_blocks(centroids, n_blocks, seed)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    probes = [cell_knn.partition_probes(X[a:b], centroids, n_probe) for a, b in zip(bounds[:-1], bounds[1:])]
    need = np.logical_or.reduce([cell_knn.probed_cells(p, block_of_cell, n_blocks) for p in probes])
    indices = np.full((n, n_neighbors), -7, np.int64)
    distances = np.zeros((n, n_neighbors), np.float32)
    for b in range(n_blocks):
        pieces = [cell_knn.cut_piece(X[a:e], p, a, need[b], block_of_cell == b)
                  for a, e, p in zip(bounds[:-1], bounds[1:], probes)]
        out = cell_knn.block_knn(pieces[::-1], centroids, n_probe, n_neighbors, "euclidean")  # any order
        indices[out["index"]], distances[out["index"]] = out["indices"], out["distances"]
    return indices, distances


def test_the_split_graph_is_one_machines_graph():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.standard_normal((9000, 12)), 0.05 * rng.standard_normal((300, 12)) + 3]).astype(np.float32)
    X = X[rng.permutation(len(X))]
    ref_i, ref_d = partitioned_knn(X, 15)
    got_i, got_d = split_graph(X, parts=4, n_neighbors=15)
    assert (got_i >= 0).all()  # every row is the query of exactly one block
    agree = (got_i == ref_i).mean()
    assert agree > 0.999, agree  # float32 products of other shapes may round a near tie differently
    np.testing.assert_allclose(got_d, ref_d, rtol=1e-5, atol=1e-6)
    assert (got_i[:, 0] == np.arange(len(X))).all()  # self first


def test_the_split_graph_does_not_depend_on_the_partitioning():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((9000, 8)).astype(np.float32)
    a = split_graph(X, parts=2, n_neighbors=10, n_blocks=3)
    b = split_graph(X, parts=5, n_neighbors=10, n_blocks=3)
    np.testing.assert_array_equal(a[0], b[0])  # each block sees its rows in the table's order, however split
    np.testing.assert_array_equal(a[1], b[1])
