"""The paper's method on an array: :class:`RareClassSearch`, UMAP + HDBSCAN leaf clusters of (N, D) representations.

A scikit-learn estimator (``check_estimator`` passes): parameters are checked in ``fit``
against :data:`raregal.discovery.config.CONSTRAINTS` (the same table ``SearchConfig`` uses),
fitted attributes end in ``_``. The k-NN graph is :mod:`raregal.discovery.knn`'s, the layouts
:mod:`raregal.discovery.umap`'s, the clusters :mod:`raregal.discovery.hdbscan_leaves`'.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from raregal.discovery.config import CONSTRAINTS, ESTIMATOR_KEYS
from raregal.discovery.hdbscan_leaves import leaf_clusters, tree_frame
from raregal.discovery.stages import StageStore, staged
from raregal.discovery.distances import EUCLIDEAN_METRICS
from raregal.discovery.knn import knn_graph
from raregal.discovery.umap import pca_init, umap_embed
from raregal.errors import InputError
from raregal.runs.model import TREE_COLUMNS
from raregal.timing import StageTimer
from raregal.validation import AnyOf, Boolean, Integer, PathLike, Seed, check_params

#: The estimator's constraints: the config's under the estimator's names; ``random_state`` also
#: takes None or a ``numpy.random.RandomState`` (scikit-learn's convention).
_CONSTRAINTS = {**{est: CONSTRAINTS[key] for key, est in ESTIMATOR_KEYS.items()},
                "random_state": Seed(generator_ok=True), "verbose": AnyOf(Boolean(), Integer(0)), "stages_dir": PathLike(none_ok=True)}


class RareClassSearch(ClusterMixin, BaseEstimator):
    """UMAP + HDBSCAN leaf clustering of galaxy representations.

    Parameters (defaults: the paper's, and a layout that is the same at any thread count)
    ----------
    n_neighbors : UMAP neighbours (50).
    n_components : dimensions of the UMAP that is clustered (5).
    min_samples, min_cluster_size : HDBSCAN's (300, 10).
    cluster_selection_method : ``"leaf"`` (the paper) or ``"eom"``.
    metric : distance in representation space, one of :data:`METRICS`.
    umap_init, umap_n_epochs, umap_min_dist : passed to umap-learn.
    map_2d : also compute a 2-D UMAP for pictures (shares the k-NN graph; starts from the 5-D
        layout's principal axes).
    map_2d_epochs : epochs of the 2-D layout (50: it starts from the 5-D layout; None: umap-learn's
        default, 200 above 10k points).
    hdbscan_backend : ``fast_hdbscan`` (default), ``hdbscan`` (reference) or ``cuml``.
    random_state : seed of every stochastic step: an int, None or a ``numpy.random.RandomState``
        (scikit-learn's ``check_random_state``; an int is used as it is).
    device : ``"cpu"``, or ``"cuda"`` for cuML's GPU UMAP and HDBSCAN; with ``"cuda"``,
        ``hdbscan_backend`` must be ``"cuml"`` or left at its default.
    layout : ``"auto"`` (default, :meth:`resolved_layout`: umap-learn's below 8,192 rows, deterministic
        above; thread-independent on the CPU for the euclidean, cosine and correlation metrics), ``"umap-learn"`` (with a seed its layout runs on one thread and NN-descent's
        graph depends on the thread count), or ``"deterministic"``: a k-NN graph that is exact
        below 8,192 rows and a seeded inverted-file search above (:mod:`raregal.discovery.knn`),
        and the parallel optimiser of :mod:`raregal.discovery.deterministic_umap`: the same bits at any thread count.
    verbose : log each stage's seconds and peak memory as it finishes.
    stages_dir : a folder that keeps each finished stage (k-NN graph, 5-D layout, 2-D map,
        clusters) so a rerun on the same data and parameters resumes from the last one
        (:mod:`raregal.discovery.stages`); None: keep nothing.

    Attributes after ``fit(X)`` with X of shape (N, D)
    ----------
    n_features_in_ : D.
    labels_ : (N,) cluster of each row, -1 = unclustered.
    probabilities_ : (N,) HDBSCAN membership strength.
    embedding_ : (N, n_components) float32 UMAP coordinates.
    embedding_2d_ : (N, 2) float32, or None.
    knn_ : (indices, distances), each (N, n_neighbors): the k-NN graph (stability repeats reuse it).
    condensed_tree_ : DataFrame (parent, child, lambda_val, child_size).
    n_clusters_ : K; cluster_tree_nodes_, cluster_persistence_ : (K,) per cluster.
    layout_ : the layout used (``"umap-learn"`` or ``"deterministic"``; what ``"auto"`` chose).
    timings_ : seconds per stage (knn, umap5, umap2, hdbscan); memory_mib_ : peak MiB after each.
    resumed_stages_ : the stages read back from ``stages_dir`` instead of computed.
    """

    def __init__(self, n_neighbors=50, n_components=5, min_samples=300, min_cluster_size=10,
                 cluster_selection_method="leaf", metric="euclidean", umap_init="pca",
                 umap_n_epochs=None, umap_min_dist=0.1, map_2d=True, map_2d_epochs=50,
                 hdbscan_backend="fast_hdbscan", random_state=0, device="cpu", layout="auto",
                 verbose=False, stages_dir=None):
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.min_samples = min_samples
        self.min_cluster_size = min_cluster_size
        self.cluster_selection_method = cluster_selection_method
        self.metric = metric
        self.umap_init = umap_init
        self.umap_n_epochs = umap_n_epochs
        self.umap_min_dist = umap_min_dist
        self.map_2d = map_2d
        self.map_2d_epochs = map_2d_epochs
        self.hdbscan_backend = hdbscan_backend
        self.random_state = random_state
        self.device = device
        self.layout = layout
        self.verbose = verbose
        self.stages_dir = stages_dir

    def _check_params(self) -> None:
        """Check every parameter in raregal's terms (:mod:`raregal.validation`), naming the first bad one."""
        check_params(self.get_params(deep=False), _CONSTRAINTS)

    def resolved_layout(self, n_rows: int | None = None) -> str:
        """The layout ``layout="auto"`` stands for with ``n_rows`` galaxies (None: many).

        Both choices give the same bits at any thread count: below :data:`EXACT_KNN_BELOW` rows
        umap-learn's (on the exact k-NN graph; its seeded optimiser runs on one thread, which
        costs little there), above it raregal's parallel ``"deterministic"`` one. ``"umap-learn"``
        also for metrics the deterministic graph lacks, and on ``device="cuda"`` (cuML's).
        """
        if self.layout != "auto":
            return self.layout
        if self.device != "cpu" or self.metric not in EUCLIDEAN_METRICS:
            return "umap-learn"
        from raregal.discovery import knn

        return "umap-learn" if n_rows is not None and n_rows < knn.EXACT_KNN_BELOW else "deterministic"

    def backends(self, n_rows: int | None = None) -> tuple[str, str]:
        """(UMAP backend, HDBSCAN backend) for these parameters: cuML for both on ``device="cuda"``."""
        layout = self.resolved_layout(n_rows)
        if layout == "deterministic" and self.metric not in EUCLIDEAN_METRICS:
            raise InputError(f"layout='deterministic' computes its own k-NN graph for {', '.join(EUCLIDEAN_METRICS)}, "
                             f"not metric={self.metric!r}", param=("layout", "metric"))
        if self.device != "cuda":
            return layout, self.hdbscan_backend
        if layout == "deterministic":
            raise InputError("layout='deterministic' runs on the CPU; device='cuda' runs cuML's UMAP: choose one",
                             param=("device", "layout"))
        if self.hdbscan_backend == "hdbscan":
            raise InputError("device='cuda' runs HDBSCAN on cuML; hdbscan_backend='hdbscan' runs on the CPU: "
                             "choose one", param=("device", "hdbscan_backend"))
        return "cuml", "cuml"

    def check_size(self, n: int) -> None:
        """Raise InputError, naming the parameter, unless ``n`` rows are enough to search."""
        if n <= self.n_components + 1 or n <= self.n_neighbors:
            smaller = max(2, n // 4)
            hint = (f"try n_neighbors={smaller}" if smaller < self.n_neighbors and n > max(smaller, self.n_components + 1)
                    else "a search needs many more galaxies than that")
            raise InputError(f"only {n} galaxies to search (n_samples={n}); need more than n_neighbors={self.n_neighbors} "
                             f"and n_components + 1 = {self.n_components + 1} ({hint})", param="n_neighbors")
        if n < self.min_samples:
            raise InputError(f"only {n} galaxies to search (n_samples={n}), fewer than min_samples={self.min_samples}; "
                             f"small samples need a smaller value, e.g. min_samples={max(2, n // 50)}",
                             param="min_samples")

    def _seed(self) -> int:
        """The int seed umap-learn and NN-descent take (an int ``random_state`` as it is)."""
        if isinstance(self.random_state, Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def fit(self, X, y=None):
        """Reduce and cluster ``X`` of shape (N, D) (finite values); returns self. ``y`` is ignored.

        With ``stages_dir`` each finished stage is kept there and a rerun on the same ``X`` with the
        same parameters resumes from the last one (:mod:`raregal.discovery.stages`).
        """
        self._check_params()
        self.backends()
        X = _validate_data(self, X)
        self.check_size(len(X))
        seed = self._seed()
        self.layout_ = self.resolved_layout(len(X))
        timer = StageTimer(echo=bool(self.verbose))
        store = None
        if self.stages_dir is not None:
            params = {**{key: getattr(self, est) for key, est in ESTIMATOR_KEYS.items()}, "seed": seed,
                      "layout": self.layout_}
            store = StageStore(self.stages_dir, X, params)
        with timer.stage("knn"):
            self.knn_ = _knn_pair(staged(store, "knn", lambda: dict(zip(("indices", "distances"), knn_graph(
                X, self.n_neighbors, self.metric, seed, deterministic=self.layout_ == "deterministic")))))
        self._fit_layout(X, seed, timer, store)  # reads self.knn_ (no second reference held here)
        self.timings_, self.memory_mib_ = dict(timer.seconds), dict(timer.peak_mib)
        self.resumed_stages_ = list(store.resumed) if store is not None else []
        return self

    def _fit_layout(self, X: np.ndarray, seed: int, timer: StageTimer, store: StageStore | None = None) -> None:
        """UMAP layouts and HDBSCAN of ``X`` on the k-NN graph ``knn_`` (what a stability repeat redoes)."""
        from raregal.discovery.deterministic_umap import SpilledGraph

        umap_backend, hdbscan_backend = self.backends(len(X))
        umap_kw = dict(n_neighbors=self.n_neighbors, metric=self.metric, init=self.umap_init,
                       n_epochs=self.umap_n_epochs, min_dist=self.umap_min_dist, random_state=seed,
                       backend=umap_backend)
        # one fuzzy graph for both maps, on disk while the 5-D layout optimises (8 bytes an edge less
        # at the search's peak: 0.5 GB at 1M galaxies), the same bits; a single map builds and prunes its own
        two_maps = umap_backend == "deterministic" and self.map_2d and self.n_components != 2
        graph = SpilledGraph(self.knn_, self.n_neighbors, seed, folder=self.stages_dir) if two_maps else None
        with timer.stage("umap5", echo=False):  # the shared fuzzy graph, when built here, is the 5-D layout's time
            aside = self._set_knn_aside(graph, store)

        def layout(n_components: int, **kw) -> dict:
            shared = {} if graph is None else {"fuzzy_graph": graph}
            knn = self.knn_ if self.knn_ is not None or graph is not None else self._knn_back(store)  # a damaged map
            return {"embedding": umap_embed(X, n_components, knn=knn, **{**umap_kw, **shared, **kw})}

        try:
            with timer.stage("umap5"):
                self.embedding_ = staged(store, "umap5", lambda: layout(self.n_components))["embedding"]
            self.embedding_2d_ = None
            if self.map_2d:
                with timer.stage("umap2"):
                    if self.n_components == 2:
                        self.embedding_2d_ = self.embedding_.copy()
                    else:
                        self.embedding_2d_ = staged(store, "umap2", lambda: layout(
                            2, init=pca_init(self.embedding_, 2), n_epochs=self.map_2d_epochs))["embedding"]
        finally:
            if graph is not None:
                graph.close()  # its temporary folder
        with timer.stage("hdbscan"):
            found = staged(store, "hdbscan", lambda: _cluster_arrays(leaf_clusters(
                self.embedding_, self.min_samples, self.min_cluster_size, hdbscan_backend,
                self.cluster_selection_method)))
        if aside:
            self.knn_ = self._knn_back(store)
        self.labels_, self.probabilities_ = found["labels"], found["probabilities"]
        self.condensed_tree_ = tree_frame({c: found[f"tree_{c}"] for c in TREE_COLUMNS})
        self.cluster_tree_nodes_, self.cluster_persistence_ = found["tree_nodes"], found["persistence"]
        self.n_clusters_ = len(self.cluster_tree_nodes_)

    def _set_knn_aside(self, graph, store: StageStore | None) -> bool:
        """Let go of ``knn_`` while the layouts and HDBSCAN run, when ``store`` keeps it; True if so.

        The k-NN graph (8 bytes a neighbour: 0.4 GB at 1M galaxies, 3.5 GB at 8.7M) is needed after
        the fit (stability repeats) but not by the layouts once their fuzzy graph is on disk, so it is
        read back from the stages afterwards. Only the shared, spilled graph allows it: a single map
        builds its fuzzy graph from ``knn_`` inside the layout stage.
        """
        if store is None or not store.kept("knn"):
            return False
        maps = ("umap5", "umap2") if self.map_2d and self.n_components != 2 else ("umap5",)
        load = lambda: self._knn_back(store)  # noqa: E731
        if any(not store.kept(stage) for stage in maps):
            if graph is None:
                return False
            self.knn_ = None  # read back to build the fuzzy graph, and freed as soon as its memberships are made
            graph.spill(load)
        elif graph is not None:
            graph.knn = load  # every map is kept: built (from the stages) only if a kept map cannot be read
        self.knn_ = None
        return True

    @staticmethod
    def _knn_back(store: StageStore) -> tuple[np.ndarray, np.ndarray]:
        kept = store.load("knn", quiet=True)
        if kept is None:
            raise RuntimeError(f"{store.path('knn')} was removed or changed while the search ran; run it again "
                               "(it resumes from the stages kept)")
        return _knn_pair(kept)

    def refit_layout(self, X, random_state) -> "RareClassSearch":
        """A clone with ``random_state`` whose layouts and clusters are refitted on this fit's k-NN graph.

        The stability repeats: only UMAP's and HDBSCAN's randomness is redone (no 2-D map).
        """
        check_is_fitted(self, "knn_")
        rep = clone(self).set_params(random_state=random_state, map_2d=False)
        rep._check_params()
        X = _validate_data(rep, X)
        timer = StageTimer(echo=False)
        rep.n_features_in_, rep.knn_, rep.layout_ = self.n_features_in_, self.knn_, self.layout_
        rep._fit_layout(X, rep._seed(), timer)
        rep.timings_, rep.memory_mib_ = dict(timer.seconds), dict(timer.peak_mib)
        return rep

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _validate_data(est, X) -> np.ndarray:
    """scikit-learn's input validation (2-D, finite, float32) that also sets ``n_features_in_``."""
    try:
        from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6
    except ImportError:  # pragma: no cover - older scikit-learn
        return est._validate_data(X, dtype=np.float32, order="C")
    return validate_data(est, X, dtype=np.float32, order="C")


def _knn_pair(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """The k-NN graph as the stage keeps it, as ``knn_``: (indices, distances)."""
    return arrays["indices"], arrays["distances"]


def _cluster_arrays(result) -> dict:
    """A :class:`~raregal.discovery.hdbscan_leaves.LeafClusters` as plain arrays (what a stage keeps)."""
    tree = result.condensed_tree
    return {"labels": result.labels, "probabilities": result.probabilities, "tree_nodes": result.tree_nodes,
            "persistence": result.persistence, **{f"tree_{c}": tree[c].to_numpy() for c in TREE_COLUMNS}}
