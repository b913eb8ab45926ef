"""numba kernels of the thread-independent k-NN graphs (:func:`raregal.discovery.knn.exact_knn`,
:func:`raregal.discovery.knn.partitioned_knn`): candidate heaps and their exact, ordered refinement."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, inline="always", cache=True)
def _replace_top(hd, hi, d, idx):
    """Replace the largest of a max-heap (``hd`` distances, ``hi`` indices) by ``(d, idx)``."""
    m = hd.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= m:
            break
        if child + 1 < m and hd[child + 1] > hd[child]:
            child += 1
        if hd[child] <= d:
            break
        hd[pos], hi[pos] = hd[child], hi[child]
        pos = child
    hd[pos], hi[pos] = d, idx


@numba.njit(nogil=True, cache=True)
def scan_tile(gram, sq_q, sq_r, ref, heap_d, heap_i, heap_rows):
    """Offer every column of a (queries x tile) Gram matrix to each query's heap, in column order.

    ``ref`` (tile,) holds the row index of each column, ``heap_rows`` (queries,) the heap of each
    Gram row (``sq_q`` is indexed like the heaps).
    """
    for r in range(gram.shape[0]):
        h = heap_rows[r]
        hd, hi = heap_d[h], heap_i[h]
        for c in range(gram.shape[1]):
            d = sq_q[h] + sq_r[c] - np.float32(2.0) * gram[r, c]
            if d < hd[0]:
                _replace_top(hd, hi, d, ref[c])


@numba.njit(nogil=True, cache=True)
def refine(Q, R, self_index, heap_i):
    """Exact float64 squared distances of each query's candidates, sorted by (distance, index), self first.

    ``Q`` (n, D) are the queries, ``R`` the rows the heaps ``heap_i`` (n, m) index into, and
    ``self_index`` (n,) each query's own row in ``R`` (-2: none); unfilled slots (-1) sort last.
    """
    n, m = heap_i.shape
    out_i = np.empty((n, m), dtype=np.int64)
    out_d = np.empty((n, m), dtype=np.float64)
    for r in range(n):
        q = self_index[r]
        for c in range(m):
            j = heap_i[r, c]
            out_i[r, c] = j
            if j < 0:
                out_d[r, c] = np.inf
                continue
            acc = 0.0
            for d in range(Q.shape[1]):
                diff = np.float64(Q[r, d]) - np.float64(R[j, d])
                acc += diff * diff
            out_d[r, c] = -1.0 if j == q else acc  # self first, even among duplicates
        if q >= 0 and not (out_i[r] == q).any():  # many duplicates crowded self out of its heap
            worst = np.argmax(out_d[r])
            out_i[r, worst], out_d[r, worst] = q, -1.0
        order = np.argsort(out_d[r] + 0.0, kind="mergesort")  # stable: equal distances keep index order
        ri, rd = out_i[r][order], out_d[r][order]
        # the heap holds candidates in no index order; sort ties by index
        for c in range(1, m):
            x_i, x_d, p = ri[c], rd[c], c
            while p > 0 and rd[p - 1] == x_d and ri[p - 1] > x_i:
                ri[p], rd[p] = ri[p - 1], rd[p - 1]
                p -= 1
            ri[p], rd[p] = x_i, x_d
        out_i[r], out_d[r] = ri, np.maximum(rd, 0.0)
    return out_i, out_d

