"""UMAP reduction of the representation, sharing one k-NN graph between the 5-D and 2-D maps.

The paper reduces the (128-d) representation with UMAP, ``n_neighbors=50``,
``n_components=5`` for clustering, and a 2-D UMAP for pictures. Both maps start from the
same nearest-neighbour graph, so raregal computes it once (pynndescent, through
umap-learn) and hands it to both :class:`umap.UMAP` fits via ``precomputed_knn``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from raregal.discovery.distances import METRICS, metric_space
from raregal.numba_cache import cache_kernels

log = logging.getLogger("raregal")


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
    if deterministic and metric not in EXACT_METRICS:
        raise ValueError(f"the deterministic k-NN graph supports {', '.join(EXACT_METRICS)}, not {metric!r}")
    if len(X) < EXACT_KNN_BELOW:
        if metric in EXACT_METRICS:
            return exact_knn(X, n_neighbors, metric)
        from sklearn.neighbors import NearestNeighbors

        distances, indices = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(X).kneighbors(X)
        return indices.astype(np.int32), distances.astype(np.float32)
    if deterministic:
        from raregal.discovery.knn import partitioned_knn

        return partitioned_knn(X, n_neighbors, metric, random_state=random_state)

    from umap.umap_ import nearest_neighbors

    cache_kernels()

    indices, distances, _ = nearest_neighbors(
        X, n_neighbors, metric, {}, angular=False,
        random_state=np.random.RandomState(random_state), low_memory=low_memory, verbose=False,
    )
    return indices, distances


#: Metrics the exact, thread-independent k-NN (:func:`exact_knn`) computes.
EXACT_METRICS = METRICS


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
    if metric not in EXACT_METRICS:
        raise ValueError(f"the exact k-NN supports {', '.join(EXACT_METRICS)}, not {metric!r}")
    P = metric_space(X, metric)
    sq = np.einsum("ij,ij->i", P, P, dtype=np.float32)  # elementwise per row: no thread-dependent sums
    m = min(n_neighbors + margin, len(P))
    parts = run_blocks(lambda s: exact_knn_of(P, sq, np.arange(s, min(s + block, len(P))), m, tile),
                       range(0, len(P), block))
    indices = np.concatenate([p[0] for p in parts])[:, :n_neighbors]
    d2 = np.concatenate([p[1] for p in parts])[:, :n_neighbors]
    dist = d2 / 2.0 if metric != "euclidean" else np.sqrt(d2)  # unit rows: |u - v|^2 = 2 (1 - cos)
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


def pca_init(Y: np.ndarray, n_components: int = 2) -> np.ndarray:
    """First principal components of an embedding ``Y`` (N, d), as an (N, n_components) UMAP init.

    The 2-D picture starts from the 5-D layout's main axes, so it needs neither a second
    spectral initialisation nor many epochs to find the same global structure. LAPACK runs on
    one thread (``Y`` is a few columns wide), so the bits do not depend on the thread count.
    """
    from sklearn.decomposition import PCA

    from raregal.workers import single_blas_thread

    with single_blas_thread():
        return PCA(n_components=n_components, svd_solver="full").fit_transform(Y).astype(np.float32)


def umap_embed(X: np.ndarray, n_components: int, n_neighbors: int = 50, *, knn=None,
               metric: str = "euclidean", init="spectral", n_epochs: int | None = None,
               min_dist: float = 0.1, random_state: int = 0, backend: str = "umap-learn",
               fuzzy_graph=None) -> np.ndarray:
    """Embed ``X`` (N, D) into (N, n_components) float32 with umap-learn.

    ``knn`` is an optional ``(indices, distances)`` pair from :func:`knn_graph` so several
    embeddings share one graph. ``init`` is ``"spectral"``, ``"pca"``, ``"random"`` or an
    (N, n_components) array. A fixed ``random_state`` makes the result reproducible
    (umap-learn then runs its layout on one thread). ``backend="deterministic"`` runs the same
    objective on all numba threads with a result independent of their number
    (:func:`raregal.discovery.deterministic_umap.deterministic_embed`; ``fuzzy_graph``: its graph, shared between maps).
    ``backend="cuml"`` runs cuML's GPU UMAP
    with the same parameters and graph (:func:`_umap_cuml`).
    """
    if backend in ("umap-learn", "deterministic"):  # both run umap-learn's graph kernels
        import umap.umap_  # noqa: F401  (imported first, so cache_kernels finds its kernels)

        cache_kernels()
    if backend == "deterministic":
        from raregal.discovery.deterministic_umap import deterministic_embed

        return deterministic_embed(X, n_components, n_neighbors, knn if knn is not None else exact_knn(X, n_neighbors, metric),
                                   init=init, n_epochs=n_epochs, min_dist=min_dist, metric=metric,
                                   random_state=random_state, graph=fuzzy_graph)
    if backend == "cuml":
        return _umap_cuml(X, n_components, n_neighbors, knn=knn, metric=metric, init=init, n_epochs=n_epochs,
                          min_dist=min_dist, random_state=random_state)
    if backend != "umap-learn":
        raise ValueError(f"unknown UMAP backend {backend!r}; choose 'umap-learn', 'deterministic' or 'cuml'")
    import umap

    kwargs = {}
    if knn is not None:
        kwargs["precomputed_knn"] = (knn[0], knn[1], None)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors, n_components=n_components, metric=metric, init=init,
        n_epochs=n_epochs, min_dist=min_dist, random_state=random_state, n_jobs=1, **kwargs,
    )
    from raregal.workers import single_blas_thread

    # the seeded optimiser runs on one thread anyway; BLAS on one thread too (PCA / spectral init),
    # so the layout does not depend on the thread count
    with warnings.catch_warnings(), single_blas_thread():
        # umap warns that a precomputed graph has no search index (only transform() needs one)
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        embedding = reducer.fit_transform(X)
    return np.asarray(embedding, dtype=np.float32)


def _umap_cuml(X, n_components, n_neighbors, *, knn, metric, init, n_epochs, min_dist,
               random_state):  # pragma: no cover - needs a GPU and cuML
    """:func:`umap_embed` on the GPU with ``cuml.manifold.UMAP`` (same k-NN graph when ``knn`` is given).

    cuML initialises with ``"spectral"`` or ``"random"`` only, so a PCA or array ``init`` becomes
    spectral; layouts therefore differ from umap-learn's in detail (see benchmarks/README.md).
    """
    from cuml.manifold import UMAP

    reducer = UMAP(n_neighbors=n_neighbors, n_components=n_components, metric=metric,
                   init=init if init in ("spectral", "random") else "spectral", n_epochs=n_epochs,
                   min_dist=min_dist, random_state=random_state,
                   precomputed_knn=None if knn is None else (np.asarray(knn[0]), np.asarray(knn[1])))
    embedding = reducer.fit_transform(np.ascontiguousarray(X, dtype=np.float32))
    return np.asarray(getattr(embedding, "get", lambda: embedding)(), dtype=np.float32)
