"""UMAP's fuzzy graph (the fuzzy union of each galaxy's k-NN memberships) built in a fraction of the memory.

Why this is written here rather than taken from umap-learn: ``umap.umap_.fuzzy_simplicial_set``
forms the union ``A + A^T - A * A^T`` with scipy's sparse algebra, which holds several COO and
CSR copies of the graph at once, about 33 bytes per edge of the result: ~25 GiB for 8.7M
galaxies at 50 neighbours, more than the whole search may use. Here the memberships come from
umap-learn's own kernels (``smooth_knn_dist``, ``compute_membership_strengths``), and the union is
made row by row from ``A``'s rows and its transpose's (two passes: count, then fill), each edge's
weight computed in float32 exactly as scipy does, ``(a + b) - a * b``. The result is the same
CSR matrix, bit for bit (``tests/discovery/test_fuzzy_union.py`` compares them), at ~8 bytes per
edge plus ``A`` and its transpose.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _csr_of_knn(indices, vals):
    """``A`` as CSR from the (N, k) memberships: each row's positive entries, sorted by column."""
    n, k = indices.shape
    indptr = np.zeros(n + 1, np.int64)
    for i in range(n):
        c = 0
        for j in range(k):
            if vals[i, j] != 0 and indices[i, j] >= 0:
                c += 1
        indptr[i + 1] = indptr[i] + c
    cols = np.empty(indptr[n], np.int32)
    data = np.empty(indptr[n], np.float32)
    for i in range(n):
        p = indptr[i]
        order = np.argsort(indices[i])
        for j in order:
            if vals[i, j] != 0 and indices[i, j] >= 0:
                cols[p] = indices[i, j]
                data[p] = vals[i, j]
                p += 1
    return indptr, cols, data


@numba.njit(cache=True)
def _transpose(indptr, cols, data, n):
    """``A^T`` as CSR (rows sorted by column, as a counting sort leaves them)."""
    t_indptr = np.zeros(n + 1, np.int64)
    for c in cols:
        t_indptr[c + 1] += 1
    for i in range(n):
        t_indptr[i + 1] += t_indptr[i]
    fill = t_indptr[:-1].copy()
    t_cols = np.empty(len(cols), np.int32)
    t_data = np.empty(len(cols), np.float32)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            c = cols[p]
            t_cols[fill[c]] = i
            t_data[fill[c]] = data[p]
            fill[c] += 1
    return t_indptr, t_cols, t_data


@numba.njit(cache=True)
def _union(indptr, cols, data, t_indptr, t_cols, t_data, out_indptr, out_cols, out_data, fill):
    """Merge each row of ``A`` with the same row of ``A^T``; with ``fill`` False only count."""
    n = len(indptr) - 1
    for i in range(n):
        p, q = indptr[i], t_indptr[i]
        e = out_indptr[i] if fill else 0
        while p < indptr[i + 1] or q < t_indptr[i + 1]:
            if q >= t_indptr[i + 1] or (p < indptr[i + 1] and cols[p] < t_cols[q]):
                c, a, b = cols[p], data[p], np.float32(0)
                p += 1
            elif p >= indptr[i + 1] or t_cols[q] < cols[p]:
                c, a, b = t_cols[q], np.float32(0), t_data[q]
                q += 1
            else:
                c, a, b = cols[p], data[p], t_data[q]
                p += 1
                q += 1
            s = a + b
            prod = a * b
            v = s - prod
            if v != 0:
                if fill:
                    out_cols[e] = c
                    out_data[e] = v
                e += 1
        if not fill:
            out_indptr[i + 1] = e


def fuzzy_union(knn_indices: np.ndarray, knn_dists: np.ndarray, n_neighbors: int):
    """UMAP's fuzzy simplicial set (``set_op_mix_ratio=1``, ``local_connectivity=1``) of a k-NN graph.

    ``knn_indices``, ``knn_dists``: (N, k), self first. Returns a scipy CSR matrix (N, N) float32
    with sorted indices, equal to ``umap.umap_.fuzzy_simplicial_set(..., "precomputed", ...)[0]``.
    """
    return _union_of(*_memberships(knn_indices, knn_dists, n_neighbors))


def fuzzy_union_loaded(load_knn, n_neighbors: int):
    """:func:`fuzzy_union` of the k-NN graph ``load_knn()`` returns (indices, distances), which is freed
    as soon as the memberships are made: the union then holds 8 bytes a neighbour less (3.5 GB at 8.7M)."""
    return _union_of(*_memberships(*load_knn(), n_neighbors))


def _memberships(knn_indices, knn_dists, n_neighbors: int):
    """``A``, each galaxy's memberships of its neighbours' fuzzy sets, as CSR: (indptr, cols, data, N)."""
    from umap.umap_ import compute_membership_strengths, smooth_knn_dist

    n = len(knn_indices)
    dists = np.asarray(knn_dists, np.float32)
    sigmas, rhos = smooth_knn_dist(dists, float(n_neighbors), local_connectivity=1.0)
    vals = compute_membership_strengths(knn_indices, dists, sigmas, rhos)[2]  # its rows, cols, dists freed now
    return (*_csr_of_knn(np.asarray(knn_indices), vals.reshape(n, knn_indices.shape[1])), n)


def _union_of(indptr, cols, data, n: int):
    """``A + A^T - A * A^T`` (scipy CSR) from ``A``'s CSR arrays."""
    import scipy.sparse

    t_indptr, t_cols, t_data = _transpose(indptr, cols, data, n)
    out_indptr = np.zeros(n + 1, np.int64)
    empty_i, empty_f = np.empty(0, np.int32), np.empty(0, np.float32)
    _union(indptr, cols, data, t_indptr, t_cols, t_data, out_indptr, empty_i, empty_f, False)
    np.cumsum(out_indptr, out=out_indptr)  # each row's count becomes its offset
    out_cols = np.empty(out_indptr[n], np.int32)
    out_data = np.empty(out_indptr[n], np.float32)
    _union(indptr, cols, data, t_indptr, t_cols, t_data, out_indptr, out_cols, out_data, True)
    return scipy.sparse.csr_matrix((out_data, out_cols, out_indptr.astype(np.int32 if out_indptr[n] < 2**31 else np.int64)),
                                   shape=(n, n))
