"""HDBSCAN's minimum spanning tree with fast_hdbscan's parallel Boruvka, started in blocks of rows.

fast_hdbscan's ``parallel_boruvka`` first queries the ``min_samples + 1`` nearest neighbours of
every point at once, float32 distances and int32 indices: (N, 301) twice, 2.4 GB at 1M points and
21 GB at 8.7M, the largest array of the whole search. It needs them for two things only: each
point's core distance (the last column) and Boruvka's first edges (each point's nearest
neighbour whose core distance is no larger than its own, ``initialize_boruvka_from_knn``).

:func:`spanning_tree` runs the same kd-tree queries (fast_hdbscan's ``parallel_tree_query``) in
blocks of rows and keeps only the core distances and each point's first :data:`FIRST` neighbours;
a point whose first edge is not among them is queried again, alone in its block. The edges are
then merged in point order and the rest of the Boruvka is fast_hdbscan's own code, so the tree
is the same, bit for bit (``tests/discovery/test_blocked_boruvka.py``), in (N, FIRST) memory.

Why this is written here: fast_hdbscan offers no blocked start; the functions it is made of are
its own (imported from ``fast_hdbscan.boruvka`` and ``fast_hdbscan.numba_kdtree``), only their
order and the blocks are raregal's.
"""

from __future__ import annotations

import numba
import numpy as np
from fast_hdbscan.disjoint_set import ds_find, ds_union_by_rank

from raregal.timing import Progress

#: Neighbours kept per point between the two passes (a point's first edge is nearly always among them).
FIRST = 16
#: Query rows per block: (BLOCK, min_samples + 1) float32 + int32 at a time (160 MB at min_samples=300).
BLOCK = 65_536


@numba.njit(parallel=True, cache=True)
def _first_edges(indices, rdists, core, rows, edges, found):  # pragma: no cover - numba
    """For each query row r (global point ``rows[r]``): its nearest neighbour k (columns 1..) with
    ``core[point] >= core[k]``, as fast_hdbscan's initialize_boruvka_from_knn picks it."""
    for r in numba.prange(indices.shape[0]):
        i = rows[r]
        for j in range(1, indices.shape[1]):
            k = indices[r, j]
            if core[i] >= core[k]:
                edges[i, 0] = np.float64(i)
                edges[i, 1] = np.float64(k)
                edges[i, 2] = np.float64(max(core[i], rdists[r, j]))
                found[r] = True
                break


@numba.njit(cache=True)
def _merge_first_edges(edges, disjoint_set):  # pragma: no cover - numba
    """The edges that join two components, merged in point order (initialize_boruvka_from_knn's second half)."""
    result = np.empty((len(edges), 3), dtype=np.float64)
    n = 0
    for e in range(len(edges)):
        if edges[e, 0] < 0:
            continue
        a = ds_find(disjoint_set, np.int32(edges[e, 0]))
        b = ds_find(disjoint_set, np.int32(edges[e, 1]))
        if a != b:
            result[n] = edges[e]
            n += 1
            ds_union_by_rank(disjoint_set, a, b)
    return result[:n]


def _core_and_first(tree, min_samples: int, block: int, first: int):
    """Core distances (N,) (squared, as fast_hdbscan keeps them) and each point's first edge (N, 3), -1 for none."""
    from fast_hdbscan.numba_kdtree import parallel_tree_query

    data, k = tree.data, min_samples + 1
    n = data.shape[0]
    core = np.empty(n, np.float32)
    near_i = np.empty((n, min(first, k)), np.int32)
    near_d = np.empty((n, min(first, k)), np.float32)
    progress = Progress(f"core distances ({k - 1} neighbours a point)", n)
    # Queried in the tree's order (the points of a leaf together), not the table's: a block's queries then
    # visit the same nodes, which stay in cache. Each point's answer is the same in any order; at 8.7M
    # points a block took 8 s against 20 s (the tree's data, 174 MB, is far beyond the caches).
    order = np.asarray(tree.idx_array)
    for s in range(0, n, block):
        rows = order[s:s + block]
        d, i = parallel_tree_query(tree, data[rows], k=k, output_rdist=True)
        core[rows], near_i[rows], near_d[rows] = d[:, -1], i[:, :first], d[:, :first]
        progress.update(min(n, s + block))
    edges = np.full((n, 3), -1.0)
    found = np.zeros(n, bool)
    _first_edges(near_i, near_d, core, np.arange(n), edges, found)
    del near_i, near_d
    again = np.flatnonzero(~found) if first < k else np.zeros(0, np.int64)
    for s in range(0, len(again), block):  # the few whose first edge lies beyond the kept neighbours
        rows = again[s:s + block]
        d, i = parallel_tree_query(tree, data[rows], k=k, output_rdist=True)
        _first_edges(i, d, core, rows, edges, np.zeros(len(rows), bool))
    return core, edges, len(again)


def spanning_tree(Y: np.ndarray, min_samples: int, block: int = BLOCK, first: int = FIRST) -> np.ndarray:
    """The mutual-reachability minimum spanning tree of ``Y`` (N, d <= 30, euclidean): (N - 1, 3) float64.

    The same edges, in the same order, as ``fast_hdbscan.hdbscan.compute_minimum_spanning_tree(Y,
    min_samples, reproducible=True)[0]`` (columns: point, point, distance), built in (N, ``first``)
    memory. ``min_samples`` must be at least 2.
    """
    from fast_hdbscan.boruvka import (boruvka_tree_query_reproducible, calculate_block_size, ds_rank_create,
                                      merge_components, update_component_vectors)
    from fast_hdbscan.hdbscan import build_kdtree

    if min_samples < 2:
        raise ValueError(f"min_samples={min_samples}: the blocked start needs at least 2")
    tree = build_kdtree(Y)
    n = tree.data.shape[0]
    disjoint_set = ds_rank_create(n)
    point_components = np.arange(n)
    node_components = np.full(tree.idx_start.shape[0], -1)
    core, edges, _ = _core_and_first(tree, min_samples, block, first)
    all_edges = _merge_first_edges(edges, disjoint_set)
    del edges
    update_component_vectors(tree, disjoint_set, node_components, point_components)
    n_components = len(np.unique(point_components))
    n_threads = numba.get_num_threads()
    progress = Progress("spanning tree: components left")  # rounds shrink the components; their time varies
    while n_components > 1:  # fast_hdbscan's parallel_boruvka loop, reproducible=True
        block_size = calculate_block_size(n_components, n, n_threads)
        distances, indices = boruvka_tree_query_reproducible(tree, node_components, point_components, core,
                                                             block_size)
        new_edges = merge_components(disjoint_set, indices, distances, point_components)
        n_components -= len(new_edges)
        update_component_vectors(tree, disjoint_set, node_components, point_components)
        if len(new_edges):
            all_edges = np.vstack((all_edges, new_edges))
        progress.update(n_components)
    all_edges[:, 2] = np.sqrt(all_edges[:, 2])
    return all_edges
