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

from raregal.numba_cache import cache_kernels

log = logging.getLogger("raregal")


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
        from raregal.discovery.knn import exact_knn

        if knn is None and fuzzy_graph is None:
            knn = exact_knn(X, n_neighbors, metric)
        return deterministic_embed(X, n_components, n_neighbors, knn,
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
