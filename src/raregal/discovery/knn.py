"""The k-NN graph UMAP starts from, in one home: exact below :data:`EXACT_KNN_BELOW` rows, NN-descent
(umap-learn's) or, for ``layout="deterministic"``, an inverted-file search that is the same, bit
for bit, at any thread count (:func:`partitioned_knn`). :func:`nearest_rows` is the exact blocked
scan both use (and :mod:`raregal.similarity` for its exact searches).

The inverted-file search.

Why this is written here rather than taken from a library: pynndescent (umap-learn's graph) lets
its threads update shared neighbour heaps, so its graph changes with ``NUMBA_NUM_THREADS``; faiss
and scikit-learn promise no results independent of their thread pools. The exact graph
(:func:`exact_knn`) is, but costs N^2 D (about 40 core-minutes at 632k x 128).

This is an inverted-file search (IVF, as in faiss's ``IndexIVFFlat``) built from parts whose
result depends on the data and the seed alone:

1. ``n_lists`` centroids: scikit-learn's ``KMeans`` (k-means++, seeded) on a seeded sample of
   rows, on one thread (its parallel sums would depend on the thread count);
2. each row's ``n_probe`` nearest centroids, exactly (:func:`exact_knn`'s
   blocked kernels); the nearest is the row's cell;
3. rows are split into fixed groups (consecutive in cell order, of a size set by N); within a group,
   cell after cell in index order, the group's rows that probe the cell are compared with the
   cell's rows by a float32 GEMM on one BLAS thread, keeping each row's ``n_neighbors + margin``
   best candidates; these are re-ranked in float64 by (distance, index), self first. A row whose
   probed cells hold too few rows is searched exactly.

Groups are independent, so they run on ``numba.get_num_threads()`` Python threads with the same
result in any order. Cost: about N (n_lists + n_probe N / n_lists) D multiply-adds. Measured on
2 cores (128-d planted tables, n_neighbors=50): with 32 probes 7 s at 100k against 25-27 s exact,
58 s at 632k against 113 s for NN-descent, recall of the exact 50 neighbours 0.991 and 0.994
(``benchmarks/knn_recall.py``); with the default :data:`GRAPH_PROBES` = 64, recall 0.9999 at 100k
for ~40 % more time.
"""

from __future__ import annotations

import warnings

import numpy as np

from raregal.discovery.distances import EUCLIDEAN_METRICS, check_metric, from_squared, metric_space
from raregal.numba_cache import cache_kernels
from raregal.timing import Progress


#: Below this many rows the k-NN graph is computed exactly (:func:`exact_knn`, the same bits at
#: any thread count), which is faster than compiling and running NN-descent; above it,
#: umap-learn's NN-descent or, for the deterministic layout, :mod:`raregal.discovery.knn`.
EXACT_KNN_BELOW = 8192


def knn_graph(X: np.ndarray, n_neighbors: int, metric: str = "euclidean", random_state: int = 0,
              low_memory: bool = True, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of each row of ``X`` (N, D), in the form umap-learn uses.

    Exact for fewer than :data:`EXACT_KNN_BELOW` rows (:func:`exact_knn`; scikit-learn's for
    metrics it lacks), else approximate: NN-descent (seeded; its graph depends on the thread
    count) or, with ``deterministic=True``, a seeded inverted-file search with the same bits at
    any thread count (:func:`raregal.discovery.knn.partitioned_knn`; recall@50 about 0.99).
    Returns ``(indices, distances)``, each of shape (N, n_neighbors), each row's self first.
    """
    if deterministic:
        check_metric(metric)
    if len(X) < EXACT_KNN_BELOW:
        if metric in EUCLIDEAN_METRICS:
            return exact_knn(X, n_neighbors, metric)
        from sklearn.neighbors import NearestNeighbors

        distances, indices = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(X).kneighbors(X)
        return indices.astype(np.int32), distances.astype(np.float32)
    if deterministic:
        return partitioned_knn(X, n_neighbors, metric, random_state=random_state)

    from umap.umap_ import nearest_neighbors

    cache_kernels()

    indices, distances, _ = nearest_neighbors(
        X, n_neighbors, metric, {}, angular=False,
        random_state=np.random.RandomState(random_state), low_memory=low_memory, verbose=False,
    )
    return indices, distances


def exact_knn(X: np.ndarray, n_neighbors: int, metric: str = "euclidean", block: int = 1024,
              tile: int = 8192, margin: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of each row of ``X`` (N, D), the same bits at any thread count.

    Row blocks of ``block`` queries are scanned against tiles of ``tile`` rows: a float32 GEMM on
    one BLAS thread (fixed shapes, so fixed rounding) gives ``n_neighbors + margin`` candidates
    per row, whose distances are then recomputed in float64 in a fixed order and sorted by
    (distance, index), self first. Blocks run on ``numba.get_num_threads()`` Python threads (BLAS
    and the numba scans release the GIL); each block's result depends on nothing but its rows.
    Cost: N^2 D multiply-adds (about 1.5 s for 20k x 128 on one core). Returns
    ``(indices int32, distances float32)`` as :func:`knn_graph`.
    """
    check_metric(metric)
    P = metric_space(X, metric)
    sq = np.einsum("ij,ij->i", P, P, dtype=np.float32)  # elementwise per row: no thread-dependent sums
    m = min(n_neighbors + margin, len(P))
    parts = run_blocks(lambda s: exact_knn_of(P, sq, np.arange(s, min(s + block, len(P))), m, tile),
                       range(0, len(P), block))
    indices = np.concatenate([p[0] for p in parts])[:, :n_neighbors]
    d2 = np.concatenate([p[1] for p in parts])[:, :n_neighbors]
    dist = from_squared(d2, metric)
    return indices.astype(np.int32), dist.astype(np.float32)


def run_blocks(work, jobs) -> list:
    """``[work(job) for job in jobs]`` on ``numba.get_num_threads()`` threads (:func:`raregal.workers.run_blocks`)."""
    import numba

    from raregal.workers import run_blocks as run

    return run(work, jobs, numba.get_num_threads())


def exact_knn_of(P: np.ndarray, sq: np.ndarray, rows: np.ndarray, m: int, tile: int = 8192):
    """The ``m`` exact nearest rows of ``P`` to each of ``rows``, self first: (indices, squared distances)."""
    return nearest_rows(P[rows], sq[rows], P, sq, rows, m, tile)


def nearest_rows(Q, sq_q, R, sq_r, self_index, m: int, tile: int = 8192):
    """The ``m`` exact nearest rows of ``R`` to each query row of ``Q``: (indices, squared distances).

    ``sq_q``, ``sq_r``: the rows' squared norms; ``self_index``: each query's own row in ``R``
    (listed first), -2 for none. ``R`` is scanned in tiles of ``tile`` rows by a float32 GEMM,
    the candidates refined in float64 (:mod:`raregal.discovery._knn_kernels`). Thread-independent when called
    through :func:`run_blocks` (BLAS on one thread).
    """
    from raregal.discovery._knn_kernels import refine, scan_tile

    heap_d = np.full((len(Q), m), np.inf, dtype=np.float32)
    heap_i = np.full((len(Q), m), -1, dtype=np.int64)
    local = np.arange(len(Q))
    for t0 in range(0, len(R), tile):
        t1 = min(t0 + tile, len(R))
        scan_tile(Q @ R[t0:t1].T, sq_q, sq_r[t0:t1], np.arange(t0, t1), heap_d, heap_i, local)
    return refine(Q, R, self_index, heap_i)


def default_lists(n_rows: int) -> int:
    """Number of IVF cells for ``n_rows`` rows: about 2 sqrt(N), at least 1."""
    return max(1, int(round(2 * np.sqrt(n_rows))))


class InvertedFile:
    """An inverted-file index over the rows of ``P`` (N, D), :func:`metric_space` rows, whose
    answers are the same bits at any thread count: raregal's one inverted-file search, behind the
    k-NN graph (:func:`partitioned_knn`) and ``raregal similar``'s ``ivf`` index.

    ``n_lists`` seeded k-means cells (default :func:`default_lists`); each query is compared with
    every row of its ``n_probe`` nearest cells (exactly, when those hold fewer than ``m`` rows).
    Attributes: ``centroids`` (n_lists, D); ``row_probes`` (N, n_probe), each row's probed cells,
    its own cell first.
    """

    def __init__(self, P: np.ndarray, n_lists: int | None = None, n_probe: int = 32, random_state: int = 0):
        if n_probe < 1 or (n_lists is not None and n_lists < 1):
            raise ValueError(f"n_probe ({n_probe}) and n_lists ({n_lists}) must be at least 1")
        self.P = np.ascontiguousarray(P, dtype=np.float32)
        n = len(self.P)
        self.sq = np.einsum("ij,ij->i", self.P, self.P, dtype=np.float32)
        self.n_lists = min(n, n_lists or default_lists(n))
        self.n_probe = min(n_probe, self.n_lists)
        self.centroids = _centroids(self.P, self.n_lists, random_state)
        self.row_probes = self.probes(self.P)
        self._index_cells(self.row_probes[:, 0])

    @classmethod
    def with_cells(cls, P: np.ndarray, centroids: np.ndarray, cells: np.ndarray, n_probe: int) -> "InvertedFile":
        """An index over rows ``P`` (N, D) whose cells (N,) of ``centroids`` are already known.

        How a part of a larger index is searched (:mod:`raregal.discovery.on_dask.cell_knn`): ``P``
        holds the rows of some cells only, in the whole index's row order; ``row_probes`` is left
        None (queries bring their own ``probes``).
        """
        ivf = cls.__new__(cls)
        ivf.P = np.ascontiguousarray(P, dtype=np.float32)
        ivf.sq = np.einsum("ij,ij->i", ivf.P, ivf.P, dtype=np.float32)
        ivf.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        ivf.n_lists, ivf.n_probe, ivf.row_probes = len(ivf.centroids), min(n_probe, len(ivf.centroids)), None
        ivf._index_cells(np.asarray(cells))
        return ivf

    def _index_cells(self, cells: np.ndarray) -> None:
        self.cell_order = np.argsort(cells, kind="stable")  # rows by cell, each cell in index order
        self.bounds = np.searchsorted(cells[self.cell_order], np.arange(self.n_lists + 1))

    def probes(self, Q: np.ndarray) -> np.ndarray:
        """Each query's ``n_probe`` nearest cells (M, n_probe), nearest first, ties by index."""
        return _nearest_centroids(Q, self.centroids, self.n_probe)

    def search(self, Q: np.ndarray, m: int, *, probes=None, self_index=None, keep: int | None = None,
               dtypes=(np.int64, np.float64), transform=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``m`` nearest rows of each query (M, D): ``(indices, squared distances)``, each (M, m),
        nearest first, ties by index, unfilled slots -1 / inf. ``self_index`` (M,): each query's own
        row (listed first), when the queries are rows of the index. ``keep``: return only the first
        ``keep`` columns, in arrays of ``dtypes``, each group's distances passed through ``transform``
        on the way (so a large graph is never held at its working width and precision)."""
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        sq_q = np.einsum("ij,ij->i", Q, Q, dtype=np.float32)
        probes = self.probes(Q) if probes is None else probes
        self_index = np.full(len(Q), -2, np.int64) if self_index is None else np.asarray(self_index, np.int64)
        m = min(m, len(self.P))
        short = np.diff(self.bounds)[probes].sum(axis=1) < m  # probed cells hold fewer than m rows
        group = int(np.clip(len(Q) // 64, 1024, 16384))
        order = np.argsort(probes[:, 0], kind="stable")
        ordered = order[~short[order]]
        keep = m if keep is None else min(keep, m)
        transform = transform or (lambda d: d)
        indices = np.empty((len(Q), keep), dtypes[0])
        d2 = np.empty((len(Q), keep), dtypes[1])

        progress = Progress("rows searched", len(Q))

        def put(rows, found) -> None:  # each job writes its own rows: no (N, m) working copy is ever held
            indices[rows], d2[rows] = found[0][:, :keep], transform(found[1][:, :keep])
            progress.advance(len(rows))

        run_blocks(lambda r: put(r, _search_group(Q[r], sq_q[r], self_index[r], probes[r], self.P, self.sq,
                                                  self.cell_order, self.bounds, m)),
                   [ordered[s:s + group] for s in range(0, len(ordered), group)])
        rows = np.flatnonzero(short)  # probed cells too small: exactly, on the same one-BLAS-thread pool
        run_blocks(lambda r: put(r, nearest_rows(Q[r], sq_q[r], self.P, self.sq, self_index[r], m)),
                   [rows[s:s + 1024] for s in range(0, len(rows), 1024)])
        return indices, d2


#: Cells the k-NN graph searches for each row. 64, not 32: recall@50 0.9999 against 0.9906 at 100k,
#: for ~40 % more time in the graph (~3 % of a search); with 32, a planted group at the edge of the
#: purity bar was lost in 1 of 5 tables that the exact graph and the paper's stack keep
#: (``benchmarks/recovery_parity.py``: 12.8 groups a table with 64, as exact and the paper; 12.6 with 32).
GRAPH_PROBES = 64


def partitioned_knn(X: np.ndarray, n_neighbors: int, metric: str = "euclidean", *, n_lists: int | None = None,
                    n_probe: int = GRAPH_PROBES, random_state: int = 0, margin: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours of each row of ``X`` (N, D), the same bits at any thread count.

    An :class:`InvertedFile` of the rows, each row searched in its ``n_probe`` nearest cells for
    ``n_neighbors + margin`` candidates, refined exactly. Returns ``(indices int32, distances
    float32)``, each (N, n_neighbors), self first, as :func:`knn_graph`.
    """
    P = metric_space(X, metric)
    ivf = InvertedFile(P, n_lists, n_probe, random_state)
    return ivf.search(P, n_neighbors + margin, probes=ivf.row_probes, self_index=np.arange(len(P)),
                      keep=n_neighbors, dtypes=(np.int32, np.float32), transform=lambda d2: from_squared(d2, metric))


def _centroids(P: np.ndarray, n_lists: int, random_state: int, per_list: int = 16) -> np.ndarray:
    """k-means centroids (n_lists, D) of a seeded sample of ``per_list * n_lists`` rows, on one thread."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    rows = centroid_rows(len(P), n_lists, random_state, per_list)
    sample = P if rows is None else P[rows]
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows: fewer distinct cells, some empty
        km = KMeans(n_clusters=n_lists, n_init=1, max_iter=10, random_state=random_state).fit(sample)
    return np.ascontiguousarray(km.cluster_centers_, dtype=np.float32)


def centroid_rows(n_rows: int, n_lists: int, random_state: int, per_list: int = 16) -> np.ndarray | None:
    """The rows k-means sees: a seeded sample of ``per_list * n_lists`` (sorted), or None for all of them."""
    if n_rows <= per_list * n_lists:
        return None
    return np.sort(np.random.default_rng(random_state).choice(n_rows, per_list * n_lists, replace=False))


def _nearest_centroids(P: np.ndarray, centroids: np.ndarray, n_probe: int, block: int = 4096) -> np.ndarray:
    """Each row's ``n_probe`` nearest centroids (N, n_probe), nearest first, ties by index."""

    sq_c = np.einsum("ij,ij->i", centroids, centroids, dtype=np.float32)
    m = min(n_probe + 4, len(centroids))

    def one(start):
        Q = P[start:start + block]
        sq_q = np.einsum("ij,ij->i", Q, Q, dtype=np.float32)
        return nearest_rows(Q, sq_q, centroids, sq_c, np.full(len(Q), -2), m)[0][:, :n_probe].astype(np.int32)

    return np.concatenate(run_blocks(one, range(0, len(P), block)))


def _search_group(Q, sq_q, self_index, probes, P, sq, cell_order, bounds, m, tile: int = 4096):
    """Each query's best ``m`` candidates among the rows of ``P`` in the cells it ``probes``, refined exactly.

    Cells are visited in index order, each in fixed ``tile`` x ``tile`` pieces (a cell of many
    duplicate rows can be large), so every heap sees its candidates in a fixed order.
    """
    from raregal.discovery._knn_kernels import refine, scan_tile

    heap_d = np.full((len(Q), m), np.inf, dtype=np.float32)
    heap_i = np.full((len(Q), m), -1, dtype=np.int64)
    pairs = np.argsort(probes.ravel(), kind="stable")  # (query, probed cell) pairs by cell
    pair_cell = probes.ravel()[pairs]
    pair_row = pairs // probes.shape[1]  # local query, ascending within each cell
    starts = np.searchsorted(pair_cell, np.arange(len(bounds)))
    for c in np.unique(pair_cell):
        for s0 in range(starts[c], starts[c + 1], tile):
            sel = pair_row[s0:min(s0 + tile, starts[c + 1])]
            for r0 in range(bounds[c], bounds[c + 1], tile):
                ref = cell_order[r0:min(r0 + tile, bounds[c + 1])]
                scan_tile(Q[sel] @ P[ref].T, sq_q, sq[ref], ref, heap_d, heap_i, sel)
    return refine(Q, P, self_index, heap_i)
